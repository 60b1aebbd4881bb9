// Drives Debian's Chromium through an e-office page that has a document signed by the leader
// (SignApproved), then sealed by the clerk (SignIssued), the way e-office pages do: the page
// names the PDF and the upload handler, kyso-bridge fetches, signs and uploads, and the page
// gets the handler's FileServer back. Run by tests/tests/bridge_browser.rs, which checks the
// uploaded files with pyHanko, pdfsig and a rendering of the page.
//
// Env: BRIDGE_PORT, SITE_PORT (a configured site), PDF (the document to serve), OUT.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} not set`); return v; };
const bridgePort = env("BRIDGE_PORT");
const sitePort = env("SITE_PORT");
const out = env("OUT");
const origin = `http://127.0.0.1:${sitePort}`;
const plugin = fs.readFileSync(path.join(here, "signplugin.js"), "utf8");
const files = new Map([["van-ban.pdf", fs.readFileSync(env("PDF"))]]);
let uploads = 0;

// The part named `uploadfile` of a multipart/form-data body.
function uploadfile(body, contentType) {
    const boundary = Buffer.from("--" + /boundary=("?)([^";]+)\1/.exec(contentType)[2]);
    let at = body.indexOf(boundary);
    while (at >= 0) {
        const next = body.indexOf(boundary, at + boundary.length);
        if (next < 0) break;
        const part = body.subarray(at + boundary.length + 2, next - 2);
        const split = part.indexOf("\r\n\r\n");
        const head = part.subarray(0, split).toString();
        if (/name="uploadfile"/.test(head)) return part.subarray(split + 4);
        at = next;
    }
    return null;
}

const page = `<!doctype html><html><head><meta charset="utf-8"><title>Văn bản đi</title>
<script>window.SIGN_SERVICE_PORT=${bridgePort};</script><script src="/signplugin.js"></script>
<script>
function promised(f, ...args) { return new Promise((resolve) => f(...args, (a) => resolve(JSON.parse(a)))); }
</script></head><body><h1>Văn bản đi</h1></body></html>`;
const server = http.createServer((req, res) => {
    if (req.url === "/signplugin.js") { res.writeHead(200, { "content-type": "text/javascript" }); res.end(plugin); return; }
    const file = /^\/files\/([\w.-]+)$/.exec(req.url);
    if (file && files.has(file[1])) { res.writeHead(200, { "content-type": "application/pdf" }); res.end(files.get(file[1])); return; }
    if (req.url === "/upload" && req.method === "POST") {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            const pdf = uploadfile(Buffer.concat(chunks), req.headers["content-type"] || "");
            if (!pdf) { res.writeHead(200, { "content-type": "application/json" }); res.end(JSON.stringify({ Status: false, Message: "no uploadfile" })); return; }
            uploads += 1;
            const name = `signed-${uploads}.pdf`;
            files.set(name, pdf);
            fs.writeFileSync(path.join(out, name), pdf);
            res.writeHead(200, { "content-type": "application/json" });
            res.end(JSON.stringify({ Status: true, Message: "Đã nhận", FileName: name, FileServer: JSON.stringify({ fileEntryId: uploads, url: `/files/${name}` }) }));
        });
        return;
    }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }); res.end(page);
});
server.listen(Number(sitePort), "127.0.0.1");

const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", `--ip-address-space-overrides=127.0.0.1:${sitePort}=public`],
    env: { ...process.env },
    timeout: 60000,
});
const results = {};
try {
    const context = await browser.newContext();
    const tab = await context.newPage();
    const call = (f, ...args) => tab.evaluate(([f, args]) => promised(window[f], ...args), [f, args]);
    await tab.goto(`${origin}/`);
    results.approved = await call("vgca_sign_approved", JSON.stringify({
        FileUploadHandler: `${origin}/upload`, SessionId: "", JWTToken: "", FileName: `${origin}/files/van-ban.pdf`,
    }));
    const approvedAt = JSON.parse(results.approved.FileServer || "{}").url;
    results.issued = await call("vgca_sign_issued", JSON.stringify({
        FileUploadHandler: `${origin}/upload`, SessionId: "", JWTToken: "", FileName: `${origin}${approvedAt}`,
        DocNumber: "123/UBND-VP", IssuedDate: "2026-12-08T09:00:00+07:00",
    }));
} catch (e) {
    results.error = String(e && e.stack || e);
} finally {
    fs.writeFileSync(path.join(out, "results.json"), JSON.stringify(results, null, 1));
    await browser.close();
    server.close();
}
