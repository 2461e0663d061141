"""End-to-end test of the web app in Debian's Chromium, driven by Playwright for Python.

Usage: e2e.py LF OUT

Starts a model hub on loopback (the Hugging Face hub's protocol, serving one small repo
made here), `lf serve` on free ports with HF_ENDPOINT pointing at it, and then, in the
browser: creates a project (a bad name first: the server's detail shows next to the
field), uploads two files by the file input, watches processing finish, runs a query and
sees a chunk of the right file (two strategies side by side), chats and sees a streamed
answer with its sources, edits llamafarm.yaml with a bad value and sees the error at its
line, downloads the hub's model with a progress bar and deletes it, reads the status
page, deletes the project, and checks phone width and an API-key server. Screenshots of
every page go to OUT, with metrics.json: first paint, the app's own "page-ready" mark
(the page's data shown and its controls live), and bytes per page. No request may leave
the server's origin.
"""

import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

LF, OUT = sys.argv[1], sys.argv[2]
CHROMIUM = os.environ.get("LF_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
os.makedirs(OUT, exist_ok=True)

# ---------------------------------------------------------------- loopback model hub
REPO = f"lf-web-e2e/tiny-{secrets.token_hex(4)}"
COMMIT = hashlib.sha1(REPO.encode()).hexdigest()
FILES = {
    "config.json": json.dumps({"model_type": "bert", "hidden_size": 8}).encode(),
    "model.safetensors": os.urandom(3 * 1024 * 1024),
}


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, code, body, ctype="application/json", extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in (f"/api/models/{REPO}", f"/api/models/{REPO}/revision/main"):
            siblings = []
            for name, data in FILES.items():
                s = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
                if name.endswith(".safetensors"):
                    s["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                siblings.append(s)
            return self.send(200, json.dumps({"id": REPO, "sha": COMMIT, "siblings": siblings}).encode())
        m = re.match(rf"^/{re.escape(REPO)}/resolve/(?:main|{COMMIT})/(.+)$", path)
        if m and m.group(1) in FILES:
            data = FILES[m.group(1)]
            start = 0
            r = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if r:
                start = int(r.group(1))
            etag = hashlib.sha256(data).hexdigest() if path.endswith(".safetensors") else git_blob_id(data)
            extra = {"ETag": f'"{etag}"', "X-Repo-Commit": COMMIT}
            if start:
                extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return self.send(206 if start else 200, data[start:], "application/octet-stream", extra)
        self.send(404, b'{"error":"not found"}')


hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
threading.Thread(target=hub.serve_forever, daemon=True).start()
HUB = f"http://127.0.0.1:{hub.server_address[1]}"


# ---------------------------------------------------------------- lf serve
def start_lf(data, *extra):
    log_path = os.path.join(data, "serve.log")
    log = open(log_path, "w")
    env = dict(os.environ, HF_ENDPOINT=HUB, RUST_LOG="info")
    proc = subprocess.Popen([LF, "serve", "--data-dir", os.path.join(data, "data"), "--port", "0", "--runtime-port", "0", *extra],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    for _ in range(600):
        text = open(log_path).read()
        urls = re.findall(r"listening on (http://\S+)", text)
        if len(urls) >= 2:
            api = [line for line in text.splitlines() if "listening on http" in line and "runtime" not in line.lower()]
            return proc, re.search(r"http://\S+", api[0]).group(0).rstrip("/")
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    print(open(log_path).read())
    raise SystemExit("lf serve did not start")


WORK = tempfile.mkdtemp(prefix="lf-web-")
LF_PROC, BASE = start_lf(WORK)
KEY = "web-e2e-" + secrets.token_hex(8)
KEY_DIR = os.path.join(WORK, "keyed")
os.makedirs(KEY_DIR)
KEY_PROC, KEY_BASE = start_lf(KEY_DIR, "--api-key", KEY)

NS, PROJECT = "webtest", "web-e2e"
FACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk", "mcp_facts_server.py")


def call(method, path, data=None):
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(BASE + path, method=method, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())
DOCS = {
    "llamas.md": "# Llamas\n\nLlamas hum when they are content or curious. A llama herd in the Andes "
                 "communicates by humming, and the humming calms the young crias.\n",
    "volcanoes.md": "# Volcanoes\n\nA volcano erupts when magma rises through the crust. Basalt lava flows "
                    "from shield volcanoes such as Mauna Loa in Hawaii.\n",
}

metrics = {}
outside = []


def shot(page, name):
    page.screenshot(path=os.path.join(OUT, f"{name}.png"), full_page=True)


def wait_ready(page):
    """Waits for the app's "page-ready" mark (polled from here: the page's CSP forbids the
    string evaluation that Playwright's wait_for_function uses)."""
    for _ in range(300):
        if page.evaluate("performance.getEntriesByName('page-ready').length"):
            return
        time.sleep(0.1)
    raise AssertionError("the page never became ready: " + page.url)


def measure(page, name):
    """Loads the current URL afresh and records paint, page-ready and bytes."""
    page.reload()
    wait_ready(page)
    m = page.evaluate("""() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      const ready = performance.getEntriesByName('page-ready')[0];
      const res = performance.getEntriesByType('resource');
      const size = (e) => e.encodedBodySize || e.transferSize || 0;
      const assets = res.filter((e) => /\\/ui\\/assets\\//.test(e.name));
      return {
        first_contentful_paint_ms: fcp ? fcp.startTime : null,
        dom_interactive_ms: nav.domInteractive,
        page_ready_ms: ready.startTime,
        html_bytes: size(nav),
        js_css_bytes: assets.reduce((s, e) => s + size(e), 0),
        api_bytes: res.filter((e) => !assets.includes(e)).reduce((s, e) => s + size(e), 0),
        requests: res.length + 1,
      };
    }""")
    metrics[name] = m
    return m


def accept_dialogs(page):
    page.on("dialog", lambda d: d.accept())


def main():
    with sync_playwright() as pw:
        try:
            run(pw)
        except Exception:
            for p in PAGES:
                p.screenshot(path=os.path.join(OUT, "failure.png"), full_page=True)
                print("failed on", p.url, "\n", p.locator("main").inner_html()[:3000])
            raise


PAGES = []


def run(pw):
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(60000)
    page = ctx.new_page()
    PAGES.append(page)
    if os.environ.get("LF_WEB_ASSETS_DIR"):
        # While editing the app: serve app.js/app.css from the source tree instead of the
        # ones compiled into `lf` (no rebuild per edit).
        src = os.environ["LF_WEB_ASSETS_DIR"]
        ctx.route(re.compile(r".*/ui/assets/app\.(js|css)\?.*"), lambda route: route.fulfill(
            path=os.path.join(src, "app.js" if ".js?" in route.request.url else "app.css"),
            content_type="text/javascript" if ".js?" in route.request.url else "text/css"))
    origins = (BASE, KEY_BASE)
    page.on("request", lambda r: None if r.url.startswith(origins) or r.url.startswith("data:") else outside.append(r.url))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    accept_dialogs(page)

    # Projects: the browser gets the app at /, curl-style clients still get JSON.
    page.goto(BASE + "/")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    page.get_by_label("Namespace").fill(NS)
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#project-list")).to_contain_text("No projects in namespace")
    form = page.locator("#create-project")
    form.get_by_label("Name").fill("bad name!")
    form.get_by_role("button", name="Create").click()
    expect(form.locator(".err")).to_contain_text("project")
    form.get_by_label("Name").fill(PROJECT)
    form.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r"/ui/p/webtest/web-e2e/documents$"))
    print("project created")

    # Documents: two files by the file input, processing watched to the end.
    files = []
    for name, text in DOCS.items():
        path = os.path.join(WORK, name)
        with open(path, "w") as f:
            f.write(text)
        files.append(path)
    section = page.locator("section[data-dataset]").first
    section.locator("input[type=file]").set_input_files(files)
    tasks = page.locator("#tasks")
    for name in DOCS:
        expect(page.locator(f"tr[data-upload='{name}']")).to_contain_text("uploaded")
    expect(tasks.locator(".task")).not_to_have_count(0)
    deadline = time.time() + 180
    while time.time() < deadline:
        states = tasks.locator(".badge").all_inner_texts()
        if states and all(s in ("SUCCESS", "FAILURE", "CANCELLED", "REVOKED") for s in states):
            break
        time.sleep(0.3)
    assert all(s == "SUCCESS" for s in tasks.locator(".badge").all_inner_texts()), tasks.inner_text()
    for name in DOCS:
        row = tasks.locator(f"tr[data-file='{name}']").last
        expect(row).to_be_visible()
        assert "failed" not in row.inner_text(), row.inner_text()
        expect(section.locator(f"tr[data-file='{name}']")).to_be_visible()
    # A file that cannot be parsed: failed, with the parser's reason beside it.
    broken = os.path.join(WORK, "broken.pdf")
    with open(broken, "wb") as f:
        f.write(b"this is not a PDF")
    section.locator("input[type=file]").set_input_files(broken)
    row = tasks.locator("tr[data-file='broken.pdf']")
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text("could not be parsed")
    shot(page, "documents")
    measure(page, "documents")
    print("documents processed:", tasks.inner_text().replace("\n", " ")[:200])

    # Retrieval: the right file first, two strategies side by side.
    page.get_by_role("link", name="Retrieval").click()
    page.get_by_label("Query").fill("Why do llamas hum?")
    page.get_by_label("Compare with").select_option(index=2)
    page.get_by_role("button", name="Search").click()
    results = page.locator("#retrieval-results section")
    expect(results).to_have_count(2)
    for i in range(2):
        expect(results.nth(i).locator(".hit .source").first).to_have_text("llamas.md")
    results.nth(0).locator("details summary").first.click()
    expect(results.nth(0).locator("details pre").first).to_contain_text('"document_name": "llamas.md"')
    shot(page, "retrieval")
    page.get_by_label("top_k").fill("0")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#query-form .err")).to_be_visible()
    print("retrieval ok:", page.locator("#query-form .err").inner_text())

    # Chat: a streamed answer with its sources; the session is listed and reopens.
    page.get_by_role("link", name="Chat").click()
    page.get_by_label("Max tokens").fill("40")
    page.get_by_label("Message").fill("What do llamas do when they are content?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".msg.assistant").last
    expect(answer).not_to_have_attribute("aria-busy", "true", timeout=180000)
    text = answer.locator(".text").inner_text()
    assert text.strip(), "empty answer"
    expect(answer.locator(".sources")).to_contain_text("llamas.md")
    expect(page.locator(".sessions li")).to_have_count(1)
    assert "session=" in page.url
    shot(page, "chat")
    measure(page, "chat")
    expect(page.locator(".msg.user")).to_have_count(1)
    print("chat answer:", text[:120].replace("\n", " "))

    # Tools: the project's model gets an MCP server's tool (scripts/sdk/mcp_facts_server.py);
    # the tool the server runs is shown in the answer as it happens.
    cfg = call("GET", f"/v1/projects/{NS}/{PROJECT}")["project"]["config"]
    cfg["mcp"] = {"servers": [{"name": "facts", "transport": "stdio", "command": sys.executable, "args": [FACTS]}]}
    cfg["runtime"]["models"][0]["mcp_servers"] = ["facts"]
    call("PUT", f"/v1/projects/{NS}/{PROJECT}", {"config": cfg})
    page.get_by_role("link", name="+ New chat").click()
    expect(page.locator(".msg")).to_have_count(0)
    page.get_by_label("Tools").select_option("required")
    page.get_by_label("use documents").uncheck()
    page.get_by_label("Max tokens").fill("40")
    page.get_by_label("Message").fill("What is the secret code of Ada?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".msg.assistant").last
    expect(answer).not_to_have_attribute("aria-busy", "true", timeout=180000)
    step = answer.locator(".step[data-tool=secret_code]")
    expect(step).to_contain_text("✓ secret_code(")
    expect(step.locator("pre")).to_contain_text("ZEBRA-4417")
    step.locator("summary").click()
    shot(page, "chat-tools")
    expect(page.locator(".sessions li")).to_have_count(2)
    print("tool step:", step.locator("summary").inner_text())

    # Config: a bad value is shown at its line.
    page.get_by_role("link", name="Config").click()
    area = page.get_by_label("llamafarm.yaml")
    expect(area).not_to_have_value("")
    yaml = area.input_value()
    assert "provider: universal" in yaml
    area.fill(yaml.replace("provider: universal", "provider: bogus", 1))
    page.get_by_role("button", name="Save").click()
    err = page.locator("#config-form .err")
    expect(err).to_contain_text("provider")
    expect(err).to_contain_text("line ")
    line = int(re.search(r"line (\d+)", err.inner_text()).group(1))
    assert "bogus" in area.input_value().split("\n")[line - 1], (line, err.inner_text())
    shot(page, "config")
    area.fill(yaml)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#config-form [role=status]")).to_contain_text("Saved")
    print("config error at line", line)

    # Models: download from the loopback hub with progress, then delete.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    expect(page.locator("#cached-models")).to_be_visible()
    page.get_by_label("Model (org/name").fill(REPO)
    page.get_by_role("button", name="Download").click()
    expect(page.locator("#download-status")).to_have_text("downloaded")
    row = page.locator(f"tr[data-model='{REPO}']")
    expect(row).to_be_visible()
    expect(page.locator("#loaded-models")).to_contain_text("SmolLM2")
    shot(page, "models")
    row.get_by_role("button").click()
    expect(row).to_have_count(0)
    page.get_by_label("Model (org/name").fill("no-such-org/no-such-model")
    page.get_by_role("button", name="Download").click()
    expect(page.locator("#download-form .err")).to_be_visible()
    print("model downloaded and deleted; bad name:", page.locator("#download-form .err").inner_text())

    # Status: health, disk and the processing events.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Status").click()
    expect(page.locator("tr[data-component=server]")).to_be_visible()
    expect(page.locator("#events")).to_contain_text("rag_processing")
    expect(page.locator("#events")).to_contain_text("inference")
    expect(page.locator("#disk")).to_contain_text("free of")
    shot(page, "status")

    # Phone width: no sideways scrolling on the chat page.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{BASE}/ui/p/{NS}/{PROJECT}/chat")
    expect(page.locator(".msg.assistant")).to_have_count(0)
    wait_ready(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate("""() => [...document.querySelectorAll('main *')].filter((e) => e.getBoundingClientRect().right > 391)
      .slice(0, 5).map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""")
    assert width <= 392, f"chat page is {width}px wide at 390: {wide}"
    shot(page, "chat-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    # Keyboard: the skip link is the first tab stop and moves focus to the page.
    page.goto(BASE + "/ui")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"

    # Import an example as a project: its files are processed.
    ex = page.locator("#import-example")
    expect(ex.locator("option")).not_to_have_count(0)
    ex.get_by_label("Name").fill("notes")
    ex.get_by_role("button", name="Import example").click()
    page.wait_for_url(re.compile(r"/ui/p/webtest/notes/documents$"))
    expect(page.locator("section[data-dataset] tr[data-file]")).not_to_have_count(0)
    page.get_by_role("link", name="Projects").first.click()

    # Delete the projects from the list.
    for name in (PROJECT, "notes"):
        page.get_by_role("button", name=f"Delete project {name}").click()
        expect(page.get_by_role("button", name=f"Delete project {name}")).to_have_count(0)
    expect(page.locator("#project-list")).to_contain_text("No projects in namespace")
    shot(page, "projects")

    # A server with API keys: the app loads, asks for a key, then works.
    page.goto(KEY_BASE + "/")
    expect(page.get_by_role("heading", name="This server needs an API key")).to_be_visible()
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#project-list")).to_be_visible()
    expect(page.get_by_role("heading", name="This server needs an API key")).to_have_count(0)
    assert page.evaluate("sessionStorage.getItem('lf.key')") == KEY
    shot(page, "api-key")

    assert not errors, errors
    browser.close()


try:
    main()
finally:
    for p in (LF_PROC, KEY_PROC):
        p.terminate()
        p.wait()
    hub.shutdown()
    shutil.rmtree(WORK, ignore_errors=True)

assert not outside, f"requests left the server: {outside}"
with open(os.path.join(OUT, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)
print(f"{'page':<10} {'first paint':>12} {'ready':>8} {'html':>7} {'js+css':>8} {'api':>8} {'requests':>9}")
for name, m in metrics.items():
    print(f"{name:<10} {m['first_contentful_paint_ms'] or 0:>10.0f}ms {m['page_ready_ms']:>6.0f}ms {m['html_bytes']:>7} "
          f"{m['js_css_bytes']:>8} {m['api_bytes']:>8} {m['requests']:>9}")
for name, m in metrics.items():
    assert m["js_css_bytes"] < 100_000, f"{name}: {m['js_css_bytes']} bytes of JS and CSS"
print(f"web e2e: all checks passed; screenshots in {OUT}")
