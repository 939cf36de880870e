"""Point the real, unmodified earthengine-api client at a stand-in (or at nothing, offline).

How the client finds the stand-in (earthengine-api 1.7.x):

* ``ee.Initialize(credentials, url=URL, project=P)`` calls ``ee.data.initialize`` with
  ``cloud_api_base_url=URL``; ``_install_cloud_api_resource`` builds two googleapiclient
  resources (JSON and raw), each fetching the discovery document from
  ``GET {URL}/$discovery/rest?version=v1&prettyPrint=false`` (``EE_CLOUD_API_VERSION`` changes
  ``v1``). ee then sets the resource's base URL to ``URL``, so calls go to
  ``{URL}/v1alpha/...`` (the paths in the shipped discovery document).
* ``ApiFunction.initialize`` then calls ``GET {URL}/v1alpha/projects/P/algorithms``.
* ``ee.Initialize`` also tries to fetch a deprecated-assets catalogue from
  storage.googleapis.com (``ee.deprecation._FetchDataCatalogStac``); :func:`connect` stubs
  that call out during initialisation so nothing leaves loopback.
* Credentials: ``google.oauth2.credentials.Credentials(token=...)`` with no refresh token and
  no expiry is always "valid", so ``google_auth_httplib2.AuthorizedHttp`` only adds an
  ``Authorization: Bearer <token>`` header and never tries a token refresh.
* ``ee.data.setMaxRetries(n)`` (default 5) is read at call time: every call retries 429 and
  5xx up to n times with googleapiclient's backoff (sleep ``random() * 2**attempt`` s).
  Exports are retried only when they carry a ``requestId`` (``ee.batch`` always sets one).
* ``ee.data.setDeadline(ms)`` sets the per-request HTTP timeout and rebuilds the resources
  (two more discovery fetches).

The ee library keeps one global state: connecting again (to another stand-in) resets it.
"""

from __future__ import annotations

import contextlib
from typing import Any
from unittest import mock

DEFAULT_PROJECT = "standin-project"


def fake_credentials(token: str = "standin-fake-token") -> Any:
    """OAuth2 credentials that are valid forever and never refresh (no network)."""
    from google.oauth2.credentials import Credentials

    return Credentials(token=token)


def connect(url: str, project: str = DEFAULT_PROJECT, *, max_retries: int | None = None,
            deadline_ms: float | None = None) -> None:
    """Initialise ``ee`` against the stand-in at ``url`` (e.g. ``StandIn().url``).

    Exactly::

        ee.Reset()
        with mock.patch.object(ee.deprecation, "_FetchDataCatalogStac", lambda: {}):
            ee.Initialize(credentials=Credentials(token="standin-fake-token"),
                          url=url, project=project)
        ee.data.setMaxRetries(max_retries)   # if given
        ee.data.setDeadline(deadline_ms)     # if given
    """
    import ee

    ee.Reset()
    with mock.patch.object(ee.deprecation, "_FetchDataCatalogStac", lambda: {}):
        ee.Initialize(credentials=fake_credentials(), url=url.rstrip("/"), project=project)
    if max_retries is not None:
        ee.data.setMaxRetries(max_retries)
    if deadline_ms is not None:
        ee.data.setDeadline(deadline_ms)


def offline_initialize(project: str = DEFAULT_PROJECT) -> None:
    """Initialise ``ee`` with the wheel's algorithms.json and no server at all.

    Enough to build and serialise expressions (``ee.serializer.encode(obj,
    for_cloud_api=True)``) for :func:`engine.ee_standin.expressions.check_expression`;
    any call that would reach the server raises ``ee.EEException`` ("not initialized").
    The patches are only active during initialisation.
    """
    import ee
    from ee import apitestcase

    ee.Reset()
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(ee.data, "_install_cloud_api_resource",
                                              lambda: None))
        stack.enter_context(mock.patch.object(ee.data, "getAlgorithms",
                                              apitestcase.GetAlgorithms))
        stack.enter_context(mock.patch.object(ee.deprecation, "_FetchDataCatalogStac",
                                              lambda: {}))
        ee.Initialize(None, project=project)


def encode(obj: Any) -> dict[str, Any]:
    """The Cloud API expression of an ee object (what the client would send)."""
    import ee

    return ee.serializer.encode(obj, for_cloud_api=True)
