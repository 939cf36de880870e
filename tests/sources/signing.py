"""A URL signer for the tests (as ``planetary_computer:sign``): ``unsigned://`` hrefs become readable paths."""
from __future__ import annotations

SIGNED: list[str] = []


def sign(href: str) -> str:
    SIGNED.append(href)
    return href.replace("unsigned://", "", 1) if href.startswith("unsigned://") else href
