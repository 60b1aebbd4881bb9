// Drives Debian's Chromium (headless, playwright-core, no downloaded browser) through web
// pages that call kyso-bridge as e-office pages do. Run by tests/tests/bridge_browser.rs, which
// sets up kysod, the bridge, the trust (NSS db in HOME) and the managed policy, and checks the
// results this script writes to OUT/results.json with OpenSSL and xmlsec1.
//
// Env: BRIDGE_PORT, SITE_PORT (configured site), ASK_PORT (unlisted site in the loopback
// policy), GATED_PORT (site not in the policy), DOCUMENT_SHA256 (base64), XML (base64), OUT.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} not set`); return v; };
const bridgePort = env("BRIDGE_PORT");
const ports = { site: env("SITE_PORT"), ask: env("ASK_PORT"), gated: env("GATED_PORT") };
const out = env("OUT");
const plugin = fs.readFileSync(path.join(here, "signplugin.js"), "utf8");

// A web application: the page loading the plugin script, on each port.
const page = `<!doctype html><html><head><meta charset="utf-8"><title>Văn bản điện tử</title>
<script>window.SIGN_SERVICE_PORT=${bridgePort};</script><script src="/signplugin.js"></script>
<script>
function promised(f, ...args) { return new Promise((resolve) => f(...args, (a) => resolve(JSON.parse(a)))); }
</script></head><body><h1>Quản lý văn bản</h1></body></html>`;
const servers = Object.values(ports).map((port) => {
    const s = http.createServer((req, res) => {
        if (req.url === "/signplugin.js") { res.writeHead(200, { "content-type": "text/javascript" }); res.end(plugin); return; }
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" }); res.end(page);
    });
    s.listen(Number(port), "127.0.0.1");
    return s;
});

const overrides = Object.values(ports).map((p) => `127.0.0.1:${p}=public`).join(",");
const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", `--ip-address-space-overrides=${overrides}`],
    env: { ...process.env },
    timeout: 60000,
});
const results = {};
try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const tab = await context.newPage();
    const call = (f, ...args) => tab.evaluate(([f, args]) => promised(window[f], ...args), [f, args]);

    // The configured site: certificate, a signed hash, a signed XML document (both forms).
    await tab.goto(`http://127.0.0.1:${ports.site}/`);
    results.cert = await call("vgca_get_cert_info");
    results.sign = await call("vgca_sign_msg", env("DOCUMENT_SHA256"));
    results.xml = await call("vgca_sign_xml", env("XML"), false);
    results.xmlDetached = await call("vgca_sign_xml", env("XML"), true);

    // A site not in the loopback policy: the browser itself blocks the connection.
    await tab.goto(`http://127.0.0.1:${ports.gated}/`);
    results.gated = await call("vgca_get_cert_info");

    // An unlisted site: asked, refused; the user clears the refusal on the settings page;
    // asked again, allowed for good.
    await tab.goto(`http://127.0.0.1:${ports.ask}/`);
    results.askRefused = await call("vgca_get_cert_info");
    results.askRefusedAgain = await call("vgca_get_cert_info");
    await tab.goto(`https://127.0.0.1:${bridgePort}/`);
    await tab.screenshot({ path: path.join(out, "settings-refused.png"), fullPage: true });
    const clear = tab.locator(`button[data-origin="http://127.0.0.1:${ports.ask}"]`);
    results.clearButtons = await clear.count();
    if (results.clearButtons > 0) {
        await Promise.all([tab.waitForEvent("load"), clear.first().click()]);
    }
    await tab.goto(`http://127.0.0.1:${ports.ask}/`);
    results.askAllowed = await call("vgca_get_cert_info");

    // The settings page, as the user sees it.
    await tab.goto(`https://127.0.0.1:${bridgePort}/`);
    results.settingsText = await tab.locator("body").innerText();
    await tab.screenshot({ path: path.join(out, "settings.png"), fullPage: true });
} catch (e) {
    results.error = String(e && e.stack || e);
} finally {
    fs.writeFileSync(path.join(out, "results.json"), JSON.stringify(results, null, 1));
    await browser.close();
    for (const s of servers) s.close();
}
