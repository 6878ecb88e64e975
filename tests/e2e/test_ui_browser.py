"""The web UI in a real headless Chromium (Debian's, driven by Playwright), against ``kura serve``
seeded by ``kura demo``: browse, search, read the explanations, follow a referrer, log in, restore a
tag, delete a tag, log out.

``KURA_SCREENSHOTS=docs/screenshots`` also saves the main pages as PNGs (the README shows them).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.authsetup import PASSWORDS, htpasswd_config, kura_with
from tests.e2e.servers import REPO, Listener, kura, require

pytestmark = pytest.mark.e2e

POLICIES: dict[str, Any] = {
    "repositories": {
        "demo/**": {"anonymous": ["pull"], "policies": [{"users": ["alice"], "actions": ["pull", "push", "delete"]}]}
    },
}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=require("chromium"), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def seed(root: str) -> dict[str, str]:
    """``kura demo`` on an open server, plus a tag ``rolling`` moved once (two entries of history)."""
    with kura(root) as url:
        host = url.removeprefix("http://")
        result = subprocess.run(
            [sys.executable, "-m", "app", "demo", "--registry", host],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        digests = {}
        for source in ("ci", "reproducible"):
            got = httpx.get(f"{url}/v2/demo/app/manifests/{source}", headers={"Accept": "*/*"})
            media_type = got.headers["content-type"]
            put = httpx.put(
                f"{url}/v2/demo/app/manifests/rolling", content=got.content, headers={"Content-Type": media_type}
            )
            assert put.status_code == 201
            digests[source] = got.headers["docker-content-digest"]
        return digests


def shot(page: Page, name: str) -> None:
    directory = os.environ.get("KURA_SCREENSHOTS")
    if directory:
        page.screenshot(path=os.path.join(directory, f"{name}.png"), full_page=True)


def test_browse_explain_restore_delete_and_log_in_and_out(
    browser: Browser, tmp_path: Path, root: str, listener: Listener
) -> None:
    digests = seed(root)
    config = htpasswd_config(str(tmp_path), root, listener.port, POLICIES)
    with kura_with(config, root, listener) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, base_url=url)

        # Anonymous users may pull demo/**: the repositories page lists the demo repositories.
        page.goto("/")
        expect(page.get_by_role("heading", name="Repositories")).to_be_visible()
        for name in ("demo/app", "demo/artifact", "demo/cache"):
            expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
        shot(page, "repositories")
        page.get_by_label("Filter repositories").fill("cache")
        page.get_by_role("button", name="Filter").click()
        expect(page.get_by_role("link", name="demo/cache", exact=True)).to_be_visible()
        expect(page.get_by_role("link", name="demo/app", exact=True)).to_have_count(0)

        # demo/app:legacy: the attestations are explained, linked to their images, and no 1970 is shown.
        page.goto("/")
        page.get_by_role("link", name="demo/app", exact=True).click()
        expect(page.get_by_role("heading", name="demo/app", exact=True)).to_be_visible()
        shot(page, "repository")
        page.get_by_role("link", name="legacy", exact=True).click()
        expect(
            page.get_by_role("heading", name="2 attestation manifest(s) listed as platform unknown/unknown")
        ).to_be_visible()
        attestations = page.locator("tr.entry-attestation")
        expect(attestations).to_have_count(2)
        expect(attestations.first).to_contain_text("attests the linux/amd64 image")
        expect(attestations.first).to_contain_text("not set")
        for row in page.locator("tr.entry-image, tr.entry-attestation").all():
            assert "1970" not in row.inner_text()
        expect(page.get_by_role("button", name="Copy the pull command by digest")).to_be_visible()
        shot(page, "manifest")
        attestations.first.get_by_role("link").last.click()  # the image it attests
        expect(page.get_by_text("linux/amd64").first).to_be_visible()

        # A referrer: the SBOM attached to demo/artifact:v1.
        page.goto("/r/demo/artifact/-/manifests/v1")
        referrers = page.locator("section[aria-labelledby=referrers-h]")
        expect(referrers).to_contain_text("application/spdx+json")
        referrers.get_by_role("link").first.click()
        expect(page.locator("h1")).to_contain_text("artifact")
        expect(page.locator("dl.facts-list").last).to_contain_text("application/spdx+json")

        # Anonymous users cannot change anything: no restore and no delete offered.
        page.goto("/r/demo/app/-/tags/rolling/history")
        expect(page.get_by_role("button", name=re.compile("^Restore"))).to_have_count(0)

        # Log in (the form brings us back), then restore rolling to the manifest it pointed at first.
        page.get_by_role("link", name="Log in").click()
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORDS["alice"])
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_text("Logged in as alice")).to_be_visible()
        expect(page).to_have_url(re.compile(r"/r/demo/app/-/tags/rolling/history$"))
        page.get_by_role("button", name=f"Restore rolling to {digests['ci']}").click()
        expect(page.get_by_role("status")).to_contain_text(f"rolling points at {digests['ci']} again")
        current = httpx.head(f"{url}/v2/demo/app/manifests/rolling", auth=("alice", PASSWORDS["alice"]))
        assert current.headers["docker-content-digest"] == digests["ci"]

        # Delete one tag of a digest (rolling and ci now share one): the other stays.
        page.goto("/r/demo/app")
        page.locator("tr", has=page.get_by_role("link", name="rolling", exact=True)).get_by_role(
            "link", name="Delete"
        ).click()
        expect(page.get_by_role("heading", name="Delete the tag demo/app:rolling?")).to_contain_text("rolling")
        expect(page.locator("main")).to_contain_text("its other tags: ci")
        page.get_by_role("button", name="Delete").click()
        expect(page.get_by_role("status")).to_contain_text("Deleted rolling.")
        expect(page.get_by_role("link", name="rolling", exact=True)).to_have_count(0)
        expect(page.get_by_role("link", name="ci", exact=True)).to_be_visible()
        gone = httpx.head(f"{url}/v2/demo/app/manifests/rolling", auth=("alice", PASSWORDS["alice"]))
        assert gone.status_code == 404
        kept = httpx.head(f"{url}/v2/demo/app/manifests/ci", auth=("alice", PASSWORDS["alice"]))
        assert kept.headers["docker-content-digest"] == digests["ci"]

        page.goto("/-/storage")
        expect(page.get_by_role("heading", name="Repositories by size")).to_be_visible()
        shot(page, "storage")

        # Log out: anonymous again, and the delete links are gone.
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("link", name="Log in")).to_be_visible()
        expect(page.get_by_text("Logged in as")).to_have_count(0)
        page.goto("/r/demo/app")
        expect(page.get_by_role("link", name="Delete")).to_have_count(0)
        page.close()


def test_dark_mode_follows_the_system(browser: Browser, root: str) -> None:
    with kura(root) as url:
        light = browser.new_page(base_url=url, color_scheme="light")
        dark = browser.new_page(base_url=url, color_scheme="dark")
        for page in (light, dark):
            page.goto("/")
        background = "getComputedStyle(document.body).backgroundColor"
        assert light.evaluate(background) != dark.evaluate(background)
        light.close()
        dark.close()
