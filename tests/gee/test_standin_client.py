"""The real earthengine-api client against the loopback stand-in."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from engine.ee_standin.compute import NOT_HANDLED, ComputeError

from .conftest import PROJECT, ROOT, wait_for

pytestmark = pytest.mark.standin

ee = pytest.importorskip("ee")


def _image():
    return ee.Image.constant(1).select(["constant"]).clip(
        ee.Geometry.Rectangle([0, 0, 0.01, 0.01]))


def _export_params(image, description, asset_id, **extra):
    """An ExportImageRequest as ee.batch builds it (image, region, scale folded in)."""
    task = ee.batch.Export.image.toAsset(
        image, description=description, assetId=asset_id,
        region=ee.Geometry.Rectangle([0, 0, 0.01, 0.01]), scale=30, **extra)
    return task.config


def _op_state(name):
    return ee.data.getOperation(name)["metadata"]["state"]


def test_initialize_uses_discovery_and_algorithms(standin):
    c = standin.counters
    assert c["requests.GET.discovery"] == 2  # JSON and raw resources
    assert c["requests.GET.algorithms.list"] == 1
    assert ee.Number(7).getInfo() == 7
    assert ee.List([1, 2, 3]).size().getInfo() == 3
    box = ee.Geometry.Rectangle([0, 0, 0.01, 0.01])
    assert ee.Image(1).rename("x").reduceRegion(ee.Reducer.mean(), box, 30).getInfo() == {"x": 1}
    with pytest.raises(ee.EEException, match="Provide 'geometry' parameter when aggregating over an unbounded"):
        ee.Image(1).reduceRegion(ee.Reducer.mean()).getInfo()


def test_export_to_asset_completes_and_creates_asset(standin):
    ee.data.createFolder(f"{ROOT}/out")
    image = _image().set("tile", "x1-y2", "version", 3)
    task = ee.batch.Export.image.toAsset(
        image, description="tile-x1-y2", assetId=f"{ROOT}/out/x1-y2",
        region=ee.Geometry.Rectangle([0, 0, 0.01, 0.01]), scale=30, maxPixels=1e10)
    task.start()
    status = wait_for(lambda: (s := task.status())["state"] in ("COMPLETED", "FAILED") and s)
    assert status["state"] == "COMPLETED", status
    assert status["task_type"] == "EXPORT_IMAGE"
    assert status["destination_uris"] == [
        f"https://code.earthengine.google.com/?asset={ROOT}/out/x1-y2"]
    op = ee.data.getOperation(task.name)
    md = op["metadata"]
    assert op["done"] is True and md["progress"] == 1.0 and md["attempt"] == 1
    assert {"createTime", "updateTime", "startTime", "endTime"} <= md.keys()
    asset = ee.data.getAsset(f"{ROOT}/out/x1-y2")
    assert asset["type"] == "IMAGE"
    assert asset["properties"] == {"tile": "x1-y2", "version": 3}
    assert [b["id"] for b in asset["bands"]] == ["constant"]
    assert standin.counters["exports_submitted"] == 1


def test_request_id_dedup_and_duplicate_description(standin):
    ee.data.createFolder(f"{ROOT}/out")
    params = _export_params(_image(), "tile-a", f"{ROOT}/out/a")
    first = ee.data.exportImage("req-tile-a-v1", dict(params))
    again = ee.data.exportImage("req-tile-a-v1", _export_params(_image(), "tile-a",
                                                                 f"{ROOT}/out/a"))
    assert first["name"] == again["name"]
    c = standin.counters
    assert c["exports_submitted"] == 1
    assert c["duplicate_request_id"] == 1
    assert c["requests.POST.image.export"] == 2
    # The same description under a new requestId is a new export, counted separately.
    other = ee.data.exportImage("req-tile-a-v2", _export_params(_image(), "tile-a",
                                                                 f"{ROOT}/out/a2"))
    assert other["name"] != first["name"]
    assert c["exports_submitted"] == 2 and c["duplicate_description"] == 1
    # Dedup still holds after completion (no "cannot overwrite" for the same request).
    wait_for(lambda: _op_state(first["name"]) == "SUCCEEDED")
    assert ee.data.exportImage("req-tile-a-v1", _export_params(
        _image(), "tile-a", f"{ROOT}/out/a"))["name"] == first["name"]
    # A new request to an existing asset without overwrite is refused like the server does.
    with pytest.raises(ee.EEException, match="Cannot overwrite asset"):
        ee.data.exportImage("req-tile-a-v3", _export_params(_image(), "tile-a",
                                                             f"{ROOT}/out/a"))


def test_running_cap_is_honoured(make_standin):
    s = make_standin(task_seconds=0.3, running_cap=2)
    ee.data.createFolder(f"{ROOT}/cap")
    names = []
    for i in range(5):
        t = ee.batch.Export.image.toAsset(
            _image(), description=f"cap-{i}", assetId=f"{ROOT}/cap/t{i}",
            region=ee.Geometry.Rectangle([0, 0, 0.01, 0.01]), scale=30)
        t.start()
        names.append(t.name)
    seen_running = []
    while True:
        ops = ee.data.listOperations()
        states = [o["metadata"]["state"] for o in ops]
        seen_running.append(states.count("RUNNING"))
        if all(st == "SUCCEEDED" for st in states):
            break
        time.sleep(0.05)
    assert max(seen_running) == 2 and s.counters["running_max"] == 2
    ops = {o["name"]: o["metadata"] for o in ee.data.listOperations()}
    starts = [ops[n]["startTime"] for n in names]
    assert starts == sorted(starts)  # queue in submission order
    # Never more than two intervals overlap.
    spans = [(ops[n]["startTime"], ops[n]["endTime"]) for n in names]
    for s0, _ in spans:
        assert sum(1 for a, b in spans if a <= s0 < b) <= 2


def test_list_operations_pages(standin):
    st = standin.state
    expr = ee.serializer.encode(ee.Image(1), for_cloud_api=True)
    for i in range(1203):
        st.submit_export(PROJECT, {"expression": expr, "description": f"bulk-{i}",
                                   "requestId": f"bulk-{i}"}, "EXPORT_IMAGE")
    ops = ee.data.listOperations()
    assert len(ops) == 1203 and len({o["name"] for o in ops}) == 1203
    assert standin.counters["list_operations_calls"] == 3  # 500 + 500 + 203
    assert ops[0]["metadata"]["description"] == "bulk-1202"  # newest first
    # Small pages by hand; pageSize above 500 is clamped.
    base = f"{standin.url}/v1alpha/projects/{PROJECT}/operations"
    seen, token, pages = [], None, 0
    while True:
        url = base + "?pageSize=300" + (f"&pageToken={token}" if token else "")
        page = json.load(urllib.request.urlopen(url))
        seen += [o["name"] for o in page["operations"]]
        pages += 1
        token = page.get("nextPageToken")
        if not token:
            break
    assert pages == 5 and len(set(seen)) == 1203
    big = json.load(urllib.request.urlopen(base + "?pageSize=5000"))
    assert len(big["operations"]) == 500
    running = json.load(urllib.request.urlopen(
        base + "?filter=" + urllib.parse.quote('metadata.state = "RUNNING"')))
    assert len(running["operations"]) == 2


def test_429_faults_are_retried_by_the_client(standin, fast_backoff):
    ee.data.setMaxRetries(5)
    standin.state.faults.update(rate_429=0.3, seed=3)
    values = [ee.Number(i).add(1).getInfo() for i in range(20)]
    assert values == list(range(1, 21))
    c = standin.counters
    assert c["faults_429"] > 0
    assert c["compute_calls"] == 20  # faulted requests never reach the handler
    assert c["requests.POST.value.compute"] == 20 + c["faults_429"]
    assert len(fast_backoff) == c["faults_429"]  # one client backoff per injected 429


def test_single_429_with_real_backoff_and_500_without_retries(standin):
    standin.state.faults.update(fail_next_429=1)
    assert ee.Number(1).getInfo() == 1
    assert standin.counters["faults_429"] == 1
    ee.data.setMaxRetries(0)
    standin.state.faults.update(fail_next_500=1)
    with pytest.raises(ee.EEException, match="internal error"):
        ee.Number(2).getInfo()
    assert standin.counters["faults_500"] == 1


def test_memory_limit_and_permanent_failures(make_standin):
    s = make_standin(memory_limit_pixels=1e5, permanent_fail="badtile")
    ee.data.createFolder(f"{ROOT}/f")
    big = ee.batch.Export.image.toAsset(
        _image(), description="big-tile", assetId=f"{ROOT}/f/big",
        region=ee.Geometry.Rectangle([0, 0, 0.5, 0.5]), scale=30, maxPixels=1e13)
    bad = ee.batch.Export.image.toAsset(
        _image(), description="badtile-7", assetId=f"{ROOT}/f/bad",
        region=ee.Geometry.Rectangle([0, 0, 0.01, 0.01]), scale=30)
    ok = ee.batch.Export.image.toAsset(
        _image(), description="ok-tile", assetId=f"{ROOT}/f/ok",
        region=ee.Geometry.Rectangle([0, 0, 0.01, 0.01]), scale=30)
    for t in (big, bad, ok):
        t.start()
    wait_for(lambda: all(t.status()["state"] in ("COMPLETED", "FAILED") for t in (big, bad, ok)))
    assert big.status()["state"] == "FAILED"
    assert big.status()["error_message"] == "User memory limit exceeded."
    assert bad.status()["error_message"] == "Image.select: Pattern 'foo' did not match any bands."
    assert ok.status()["state"] == "COMPLETED"
    op = ee.data.getOperation(big.name)
    assert op["done"] and op["metadata"]["state"] == "FAILED"
    with pytest.raises(ee.EEException, match="does not exist"):
        ee.data.getAsset(f"{ROOT}/f/big")
    assert s.counters["tasks_failed"] == 2 and s.counters["tasks_succeeded"] == 1
    # maxPixels is enforced like the server does.
    s.state.faults.update(memory_limit_pixels=None)
    small = ee.batch.Export.image.toAsset(
        _image(), description="too-many", assetId=f"{ROOT}/f/many",
        region=ee.Geometry.Rectangle([0, 0, 0.5, 0.5]), scale=30, maxPixels=1000)
    small.start()
    wait_for(lambda: small.status()["state"] == "FAILED")
    assert "Export too large" in small.status()["error_message"]


def test_checker_rejects_bad_expressions_through_the_client(standin):
    bogus = ee.ApiFunction("Image.selectt", {
        "args": [{"name": "input", "type": "Image"},
                 {"name": "bandSelectors", "type": "List"}], "returns": "Image"})
    img = ee.Image(ee.ComputedObject(bogus, {"input": ee.Image(1),
                                             "bandSelectors": ["constant"]}))
    with pytest.raises(ee.EEException, match=r"Unknown function: Image\.selectt"):
        img.getInfo()
    wrong_arg = ee.ApiFunction("Image.select", {
        "args": [{"name": "input", "type": "Image"},
                 {"name": "bandz", "type": "List"}], "returns": "Image"})
    img2 = ee.Image(ee.ComputedObject(wrong_arg, {"input": ee.Image(1), "bandz": ["constant"]}))
    with pytest.raises(ee.EEException, match=r"Image\.select, argument 'bandz'"):
        img2.getInfo()
    ee.data.createFolder(f"{ROOT}/x")
    with pytest.raises(ee.EEException, match="Unknown function: Image.selectt"):
        ee.batch.Export.image.toAsset(img, description="bad", assetId=f"{ROOT}/x/bad",
                                      region=ee.Geometry.Rectangle([0, 0, 1, 1]),
                                      scale=30).start()
    c = standin.counters
    assert c["invalid_expressions"] == 3 and c["exports_submitted"] == 0
    assert c["requests.POST.value.compute"] == 2  # 400s are not retried


def test_assets_create_list_delete(standin):
    ee.data.createFolder(f"{ROOT}/a")
    ee.data.createFolder(f"{ROOT}/a/b")
    ee.data.createAsset({"type": "ImageCollection"}, f"{ROOT}/a/coll")
    with pytest.raises(ee.EEException, match="does not exist"):
        ee.data.createFolder(f"{ROOT}/missing/child")
    with pytest.raises(ee.EEException, match="Cannot overwrite"):
        ee.data.createFolder(f"{ROOT}/a")
    root = ee.data.listAssets(ROOT)["assets"]
    assert [a["name"] for a in root] == [f"{ROOT}/a"]
    children = ee.data.listAssets(f"{ROOT}/a")["assets"]
    assert {(a["name"], a["type"]) for a in children} == {
        (f"{ROOT}/a/b", "FOLDER"), (f"{ROOT}/a/coll", "IMAGE_COLLECTION")}
    paged = ee.data.listAssets({"parent": f"{ROOT}/a", "pageSize": 1})
    assert len(paged["assets"]) == 1 and paged["nextPageToken"]
    with pytest.raises(ee.EEException, match="not empty"):
        ee.data.deleteAsset(f"{ROOT}/a")
    ee.data.deleteAsset(f"{ROOT}/a/b")
    ee.data.deleteAsset(f"{ROOT}/a/coll")
    ee.data.deleteAsset(f"{ROOT}/a")
    with pytest.raises(ee.EEException, match=f"Asset '{ROOT}/a' does not exist"):
        ee.data.getAsset(f"{ROOT}/a")
    assert ee.data.listAssets(ROOT)["assets"] == []
    assert standin.counters["assets_deleted"] == 3


def test_asset_properties_update_and_rename(standin):
    ee.data.createFolder(f"{ROOT}/p")
    ee.data.createFolder(f"{ROOT}/p/one")
    ee.data.updateAsset(f"{ROOT}/p/one", {"properties": {"k": 1}}, ["properties.\"k\""])
    assert ee.data.getAsset(f"{ROOT}/p/one")["properties"] == {"k": 1}
    ee.data.renameAsset(f"{ROOT}/p/one", f"{ROOT}/p/two")
    assert ee.data.getAsset(f"{ROOT}/p/two")["properties"] == {"k": 1}


def test_cancel_operation(make_standin):
    make_standin(task_seconds=5, running_cap=1)
    ee.data.createFolder(f"{ROOT}/c")
    tasks = []
    for i in range(2):
        t = ee.batch.Export.image.toAsset(
            _image(), description=f"c{i}", assetId=f"{ROOT}/c/t{i}",
            region=ee.Geometry.Rectangle([0, 0, 0.01, 0.01]), scale=30)
        t.start()
        tasks.append(t)
    for t in tasks:
        t.cancel()
    assert [t.status()["state"] for t in tasks] == ["CANCELLED", "CANCELLED"]


def test_compute_registry(standin):
    reg = standin.state.compute

    def s2_count(req):
        if "COPERNICUS/S2_SR_HARMONIZED" not in req.constants():
            return NOT_HANDLED
        return 42

    reg.register("Collection.size", s2_count)
    col = ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED").filterDate("2020-01-01", "2021-01-01")
    assert col.size().getInfo() == 42
    # not handled: computed, as Earth Engine would (an unfiltered collection is too big to list)
    with pytest.raises(ee.EEException, match="Collection query aborted after accumulating over 5000 elements"):
        ee.ImageCollection("LANDSAT/LC08/C02/T1_L2").size().getInfo()
    reg.register_marker("boom", lambda req: (_ for _ in ()).throw(
        ComputeError("User memory limit exceeded.")))
    with pytest.raises(ee.EEException, match="User memory limit exceeded"):
        ee.String("boom").getInfo()
    # not handled by a user handler: computed, keys named as Earth Engine names them
    img = ee.Image.constant([1, 2]).rename(["VV", "VH"])
    box = ee.Geometry.Rectangle([0, 0, 0.01, 0.01])
    red = ee.Reducer.mean().combine(ee.Reducer.count(), None, True)
    assert img.reduceRegion(red, box, 100).getInfo() == {"VV_mean": 1, "VV_count": 121, "VH_mean": 2, "VH_count": 121}  # 11 x 11 centres of 100 m
    pct = img.select("VV").reduceRegion(ee.Reducer.percentile([5, 15]), box, 100).getInfo()
    assert pct == {"VV_p5": 1, "VV_p15": 1}
    assert img.bandNames().getInfo() == ["VV", "VH"]
    with pytest.raises(ee.EEException, match="does not implement the algorithm Reducer.stdDev"):
        img.reduceRegion(ee.Reducer.stdDev(), box, 100).getInfo()
    assert standin.counters["compute_unsupported"] == 0


def test_counters_and_config_endpoints(standin):
    ee.Number(1).getInfo()
    counters = json.load(urllib.request.urlopen(f"{standin.url}/_standin/counters"))
    assert counters["compute_calls"] == 1
    assert counters["requests.POST.value.compute"] == 1
    req = urllib.request.Request(
        f"{standin.url}/_standin/config", method="POST",
        data=json.dumps({"running_cap": 3, "task_seconds": 0.5, "fault_429": 0.25,
                         "permanent_fail": ["nope"]}).encode(),
        headers={"Content-Type": "application/json"})
    cfg = json.load(urllib.request.urlopen(req))
    assert cfg["running_cap"] == 3 and cfg["faults"]["rate_429"] == 0.25
    assert standin.state.running_cap == 3 and standin.state.faults.rate_429 == 0.25
    summary = json.load(urllib.request.urlopen(f"{standin.url}/_standin/state"))
    assert summary["config"]["task_seconds"] == 0.5
    assert dict(standin.counters)["requests.GET.standin"] == 2  # control calls never fault


def test_concurrent_clients(make_standin, fast_backoff):
    """Many threads share the ee client; counts stay exact under 429 faults."""
    from concurrent.futures import ThreadPoolExecutor

    s = make_standin(task_seconds=0.1, running_cap=2, fault_429=0.2, seed=11)
    ee.data.setMaxRetries(8)
    ee.data.createFolder(f"{ROOT}/conc")

    def work(i):
        params = _export_params(_image().set("i", i), f"conc-{i}", f"{ROOT}/conc/t{i}")
        op = ee.data.exportImage(f"conc-req-{i}", params)
        again = ee.data.exportImage(f"conc-req-{i}", _export_params(
            _image().set("i", i), f"conc-{i}", f"{ROOT}/conc/t{i}"))
        assert op["name"] == again["name"]
        return ee.Number(i).multiply(2).getInfo()

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(24))) == [2 * i for i in range(24)]
    c = s.counters
    assert c["exports_submitted"] == 24 and c["duplicate_request_id"] == 24
    assert c["faults_429"] > 0 and c["handler_errors"] == 0
    wait_for(lambda: all(o["done"] for o in ee.data.listOperations()), timeout=20)
    assert c["running_max"] == 2 and c["tasks_succeeded"] == 24
    assert len(ee.data.listAssets(f"{ROOT}/conc")["assets"]) == 24


def test_lost_responses_exercise_request_id_dedup(make_standin, fast_backoff):
    s = make_standin(task_seconds=0.1, rate_lost_response=0.5, seed=2,
                     fault_kinds=["image.export"])
    ee.data.createFolder(f"{ROOT}/lost")
    ops = [ee.data.exportImage(f"lost-{i}", _export_params(_image(), f"lost-{i}",
                                                           f"{ROOT}/lost/t{i}"))
           for i in range(10)]
    c = s.counters
    assert c["faults_lost_response"] > 0
    assert c["exports_submitted"] == 10  # every retry was deduplicated
    assert c["duplicate_request_id"] == c["faults_lost_response"]
    assert len({o["name"] for o in ops}) == 10


def test_queue_limit_answers_429(make_standin):
    make_standin(task_seconds=5, running_cap=1, max_queued_tasks=2)
    ee.data.setMaxRetries(0)
    ee.data.createFolder(f"{ROOT}/q")
    for i in range(2):
        ee.data.exportImage(f"q-{i}", _export_params(_image(), f"q-{i}", f"{ROOT}/q/t{i}"))
    with pytest.raises(ee.EEException, match="Too many tasks"):
        ee.data.exportImage("q-2", _export_params(_image(), "q-2", f"{ROOT}/q/t2"))
