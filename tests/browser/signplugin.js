// The calls e-office pages make to the local signing service, written the way the VGCA
// Sign Service's vgcaplugin.js makes them: each function opens a WebSocket to
// wss://127.0.0.1:PORT/<Operation>, sends one text frame when it opens, and hands the one
// answer frame to the callback. A failed connection reaches the callback as {"Status":-1}.
(function (global) {
    var port = global.SIGN_SERVICE_PORT || 8987;
    function call(operation, frame, callback) {
        var answered = false;
        var ws = new WebSocket("wss://127.0.0.1:" + port + "/" + operation);
        ws.onopen = function () { ws.send(frame); };
        ws.onmessage = function (e) { answered = true; callback(e.data); ws.close(); };
        ws.onerror = function () { if (!answered) { answered = true; callback('{"Status":-1,"Message":"no connection"}'); } };
        ws.onclose = function () { if (!answered) { answered = true; callback('{"Status":-1,"Message":"closed"}'); } };
    }
    global.vgca_get_cert_info = function (callback) { call("GetCertInfo", "get_cert_info", callback); };
    global.vgca_sign_msg = function (hashBase64, callback) {
        call("SignMsg", JSON.stringify({ HashAlg: "SHA256", HashValue: hashBase64, Encode: "RSA" }), callback);
    };
    global.vgca_sign_xml = function (xmlBase64, signatureOnly, callback) {
        call("SignXML", JSON.stringify({ Base64Content: xmlBase64, ReturnSignatureOnly: signatureOnly ? "true" : "false", HashAlg: "Sha256", XmlDsigForm: "true" }), callback);
    };
    global.vgca_config = function (callback) { call("Config", "config", callback); };
    // Documents: the page names the file and the upload handler; the service fetches, signs
    // and uploads, and answers with the handler's FileServer.
    global.vgca_sign_approved = function (json, callback) { call("SignApproved", json, callback); };
    global.vgca_sign_issued = function (json, callback) { call("SignIssued", json, callback); };
})(window);
