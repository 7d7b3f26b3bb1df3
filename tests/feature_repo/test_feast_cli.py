"""The checked-in repo works with Feast's own CLI: `apply`, `materialize-incremental`, `serve`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from feed.config import FEATURE_REPO_DIR, FeedPaths
from pipelines import feature_store

FEAST = str(Path(sys.executable).with_name("feast"))


def _feast(yaml_file: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FEAST, "-c", str(FEATURE_REPO_DIR), "-f", str(yaml_file), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait_healthy(url: str, proc: subprocess.Popen[str], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"feast serve exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"feast serve not healthy within {deadline_s} s")


@pytest.mark.integration
def test_feast_cli_apply_and_materialize(tmp_path: Path, fabricate: Any) -> None:
    paths = FeedPaths(home=tmp_path)
    fab = fabricate.write_feature_tables(paths)
    feature_store.ensure_embedding_tables(paths)
    yaml_file = feature_store.write_config(paths)
    env = {**os.environ, **feature_store.definitions_env(paths)}

    applied = _feast(yaml_file, env, "apply")
    assert applied.returncode == 0, applied.stderr[-3000:]  # 134 would be the deltalake abort at exit
    end = (fab.t + dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")
    materialized = _feast(yaml_file, env, "materialize-incremental", end)
    assert materialized.returncode == 0, materialized.stderr[-3000:]
    assert (paths.feast / "registry.db").exists()

    online = feature_store.online_features(paths, "retrieval_member_v1", [{"member_id": 3}])
    assert online["member_profile__headline"] == ["headline m3 s2"]


@pytest.mark.integration
def test_feast_serve_answers_get_online_features(materialized_home: Any, loopback_port: int) -> None:
    """`feast serve` over the same registry answers the retrieval service on a loopback port."""
    paths = materialized_home.paths
    yaml_file = feature_store.write_config(paths)
    env = {**os.environ, **feature_store.definitions_env(paths)}
    base = f"http://127.0.0.1:{loopback_port}"
    cmd = [FEAST, "-c", str(FEATURE_REPO_DIR), "-f", str(yaml_file), "serve"]
    cmd += ["-h", "127.0.0.1", "-p", str(loopback_port), "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_healthy(f"{base}/health", proc, deadline_s=90)
        body = {"feature_service": "retrieval_member_v1", "entities": {"member_id": [1, 42]}}
        answer = _post(f"{base}/get-online-features", {**body, "full_feature_names": True})
        names = answer["metadata"]["feature_names"]
        values = dict(zip(names, (r["values"] for r in answer["results"]), strict=True))
        assert values["member_id"] == [1, 42]
        assert values["member_profile__headline"] == ["headline m1 s2", None]
        assert values["member_history__engaged_post_ids"][0] == [101, 102]
        assert values["member_embedding__embedding"][0] == [0.125, 0.25, 0.5, -1.0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
