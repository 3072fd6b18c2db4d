"""Drive ComfyUI's real frontend in headless Chromium: load UI workflows and convert them to API
prompts with the frontend's own ``app.graphToPrompt()``, or build workflows node by node and
save them as the frontend saves them.

Runs with the ComfyUI venv's Python (it needs aiohttp for the DevTools websocket):

    <venv>/bin/python tests/comfyui/frontend.py URL JOBS.json RESULTS.json

JOBS.json: ``{"convert": [workflow, ...], "build": [spec, ...], "screenshots": DIR | null}``.
RESULTS.json gets ``{"convert": [{"prompt", "missing", "node_types"}...], "build": [workflow...]}``.
A spec is ``{"name", "nodes": [{"id", "type", "title"?, "pos", "widgets"?}], "links": [[from id, output
name or index, to id, input name]], "groups"?: [{"title", "bounding"}]}``. Needs the Debian package
``chromium`` (or CHROMIUM=path).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp

READY = "!!(window.app && window.app.graph && window.app.canvas && window.LiteGraph)"

CONVERT = """
async (workflow) => {
  await window.app.loadGraphData(workflow, true, true, null, {showMissingNodesDialog: false, showMissingModelsDialog: false});
  const graph = window.app.graph;
  const missing = graph.nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type);
  const prompt = await window.app.graphToPrompt();
  return {missing, node_types: graph.nodes.map(n => n.type), prompt: prompt.output};
}
"""

BUILD = """
async (spec) => {
  const graph = window.app.graph;
  graph.clear();
  const byId = {};
  for (const n of spec.nodes) {
    const node = LiteGraph.createNode(n.type);
    if (!node) throw new Error(`unknown node type ${n.type}`);
    if (n.title) node.title = n.title;
    graph.add(node);
    node.pos = n.pos;
    if (n.size) node.size = n.size;
    for (const [name, value] of Object.entries(n.widgets || {})) {
      const widget = (node.widgets || []).find(w => w.name === name);
      if (!widget) throw new Error(`${n.type} has no widget ${name}`);
      widget.value = value;
    }
    byId[n.id] = node;
  }
  for (const [from, output, to, input] of spec.links) {
    const source = byId[from], target = byId[to];
    const out = typeof output === "number" ? output : source.findOutputSlot(output);
    const inp = target.findInputSlot(input);
    if (out < 0) throw new Error(`${source.type} has no output ${output}`);
    if (inp < 0) throw new Error(`${target.type} has no input ${input}`);
    if (!source.connect(out, target, inp)) throw new Error(`cannot link ${from}.${output} -> ${to}.${input}`);
  }
  for (const g of spec.groups || []) {
    const group = new LiteGraph.LGraphGroup(g.title);
    group.pos = g.bounding.slice(0, 2);
    group.size = g.bounding.slice(2, 4);
    graph.add(group);
  }
  const canvas = window.app.canvas;
  const xs = graph.nodes.flatMap(n => [n.pos[0], n.pos[0] + n.size[0]]);
  const ys = graph.nodes.flatMap(n => [n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT, n.pos[1] + n.size[1]]);
  const [left, top] = [Math.min(...xs), Math.min(...ys)];
  canvas.ds.fitToBounds([left, top, Math.max(...xs) - left, Math.max(...ys) - top], {zoom: 0.95});
  graph.setDirtyCanvas(true, true);
  await new Promise(resolve => setTimeout(resolve, 300));
  return JSON.parse(JSON.stringify(graph.serialize()));
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DevTools:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.counter = 0

    async def call(self, method: str, **params: object) -> dict:
        self.counter += 1
        my_id = self.counter
        await self.ws.send_json({"id": my_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json()
            if message.get("id") == my_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str) -> object:
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise RuntimeError(f"the frontend threw: {text}")
        return result["result"].get("value")

    async def apply(self, function: str, argument: object) -> object:
        return await self.evaluate(f"({function})({json.dumps(argument)})")


def skip_first_run_dialog(url: str) -> None:
    """The frontend opens its template browser on a fresh install; mark that as seen."""
    request = urllib.request.Request(f"{url}/settings/Comfy.TutorialCompleted", data=b"true", method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()


async def session(url: str, jobs: dict, chromium: str, timeout: float = 120) -> dict:
    skip_first_run_dialog(url)
    port = free_port()
    browser = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000",
         f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        targets = None
        deadline = time.monotonic() + 60
        while targets is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as answer:
                    targets = json.load(answer)
            except OSError:
                time.sleep(0.2)
        if not targets:
            raise RuntimeError("Chromium did not open its DevTools port")
        page = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        async with aiohttp.ClientSession() as client, client.ws_connect(page, max_msg_size=0) as ws:
            tools = DevTools(ws)
            await tools.call("Page.navigate", url=url)
            deadline = time.monotonic() + timeout
            while not await _ready(tools):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the ComfyUI frontend at {url} did not come up within {timeout:.0f} s")
                await asyncio.sleep(0.5)
            await asyncio.sleep(3)  # the app restores its last workflow right after start
            results: dict = {"convert": [], "build": []}
            shots = jobs.get("screenshots")
            for index, spec in enumerate(jobs.get("build", [])):
                results["build"].append(await tools.apply(BUILD, spec))
                await _screenshot(tools, shots, f"build-{spec.get('name', index)}.png")
            for index, workflow in enumerate(jobs.get("convert", [])):
                results["convert"].append(await tools.apply(CONVERT, workflow))
                await _screenshot(tools, shots, f"convert-{index}.png")
            return results
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()


async def _ready(tools: DevTools) -> bool:
    try:
        return bool(await tools.evaluate(READY))
    except RuntimeError:
        return False


async def _screenshot(tools: DevTools, folder: str | None, name: str) -> None:
    if folder:
        await asyncio.sleep(0.5)
        shot = await tools.call("Page.captureScreenshot", format="png")
        Path(folder, name).write_bytes(base64.b64decode(shot["data"]))


def main(argv: list[str]) -> int:
    url, jobs_path, results_path = argv
    jobs = json.loads(Path(jobs_path).read_text())
    results = asyncio.run(session(url, jobs, os.environ.get("CHROMIUM", "chromium")))
    Path(results_path).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
