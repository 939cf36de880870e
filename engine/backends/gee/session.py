"""Connect the earthengine-api client: project, credentials and API URL.

* Project: ``EE_PROJECT`` from the config or ``--project``, else the ``EE_PROJECT`` environment
  variable.
* Credentials, in this order: ``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account key or an
  authorised-user file, read with ``google.auth.load_credentials_from_file``), else Earth
  Engine's persistent credentials from ``earthengine authenticate`` (or application default
  credentials, as ``ee.data.get_persistent_credentials`` does).
* API URL: ``EE_API_URL`` / ``--ee-url`` (default ``https://earthengine.googleapis.com``).

Anything missing raises one :class:`CredentialsError` naming every remedy. Credentials are never
logged, written to the run directory or put in an error message: only where they came from.
"""
from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from engine.errors import CredentialsError, EarthEngineError

log = logging.getLogger(__name__)

REMEDY_CREDENTIALS = ("run `earthengine authenticate` (or set GOOGLE_APPLICATION_CREDENTIALS to a "
                      "service-account key file)")
REMEDY_PROJECT = "pass --project, set EE_PROJECT in the config, or set the EE_PROJECT environment variable"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Session:
    """An initialised client: which project, which URL, where the credentials came from."""

    project: str
    url: str
    credentials_source: str

    @property
    def loopback(self) -> bool:
        return is_loopback(self.url)


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def resolve_project(configured: str | None) -> str | None:
    return configured or os.environ.get("EE_PROJECT") or None


def load_credentials() -> tuple[Any | None, str, str | None]:
    """(credentials or None, source description, problem or None)."""
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        import google.auth
        import google.auth.exceptions

        if not os.path.isfile(path):
            return None, "", f"GOOGLE_APPLICATION_CREDENTIALS points to {path!r}, which is not a file; " \
                             "point it at a service-account key file or unset it"
        try:
            creds = _credentials_from_file(path)
        except (google.auth.exceptions.DefaultCredentialsError, ValueError, OSError, KeyError) as e:
            # the library's message names the file and the missing field, never a secret
            return None, "", (f"GOOGLE_APPLICATION_CREDENTIALS file {path!r} is not a usable credentials file "
                              f"({type(e).__name__}); {REMEDY_CREDENTIALS}")
        return creds, "GOOGLE_APPLICATION_CREDENTIALS", None
    try:
        import ee

        creds = ee.data.get_persistent_credentials()
    except Exception:  # noqa: BLE001 - ee raises EEException, google-auth its own errors
        return None, "", f"no Earth Engine credentials found: {REMEDY_CREDENTIALS}"
    return creds, "earthengine persistent credentials", None


def _credentials_from_file(path: str) -> Any:
    """Service-account key or authorised-user file, loaded by its declared type."""
    import json

    from ee import oauth

    with open(path, encoding="utf-8") as fh:
        kind = json.load(fh).get("type")
    if kind == "service_account":
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_file(path, scopes=oauth.SCOPES)
    if kind == "authorized_user":
        from google.oauth2 import credentials

        return credentials.Credentials.from_authorized_user_file(path, scopes=oauth.SCOPES)
    raise ValueError(f"credentials type {kind!r} is not supported (service_account or authorized_user)")


def initialize(configured_project: str | None, url: str) -> Session:
    """Initialise ``ee`` once for this process; raise CredentialsError with every remedy."""
    import ee

    project = resolve_project(configured_project)
    creds, source, problem = load_credentials()
    if problem and is_loopback(url) and not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        # a loopback server (the stand-in) needs no account: an anonymous token that never leaves
        # this machine
        from google.oauth2.credentials import Credentials

        creds, source, problem = Credentials(token="loopback-anonymous"), "none (loopback server)", None
    problems = []
    if problem:
        problems.append(problem)
    if not project:
        problems.append(f"no Earth Engine project: {REMEDY_PROJECT}")
    if problems:
        raise CredentialsError("; ".join(problems))
    url = url.rstrip("/")
    ee.Reset()
    with ExitStack() as stack:
        if is_loopback(url):  # the dataset-deprecation catalogue lives on storage.googleapis.com
            stack.enter_context(mock.patch.object(ee.deprecation, "_FetchDataCatalogStac", lambda: {}))
        try:
            ee.Initialize(credentials=creds, url=url, project=project)
        except ee.EEException as e:
            raise EarthEngineError(f"Earth Engine at {url} refused to initialise for project {project!r}: {e}; "
                                   f"check --project and {REMEDY_CREDENTIALS}") from None
        except Exception as e:  # noqa: BLE001 - transport errors of httplib2 / requests / google-auth
            from engine.backends.gee.api import classify

            err = classify(e)
            if isinstance(err, CredentialsError):
                raise err from None
            raise EarthEngineError(f"cannot reach Earth Engine at {url} ({type(e).__name__}); check --ee-url / "
                                   "EE_API_URL and the network") from None
    log.info("Earth Engine: project %s at %s (credentials from %s)", project, url, source)
    return Session(project=project, url=url, credentials_source=source)
