"""A POST form as a route dependency."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import FormData


async def form_data(request: Request) -> FormData:
    """The whole submitted form, for a synchronous route that reads many or repeated fields
    (``Depends(form_data)`` reads it on the event loop, so the route can stay ``def``)."""
    return await request.form()
