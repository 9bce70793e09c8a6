// The data officer signs in the browser with a key file from their own machine. The key is read into
// this page's memory only (WebCrypto, non-extractable), never uploaded: the coordinator receives the
// signed statement and can verify it, but cannot sign in the officer's name.

function derFromPem(pem) {
  const body = pem.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, "").replace(/\s+/g, "");
  const raw = atob(body);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

export async function importOfficerKey(file) {
  const pem = await file.text();
  if (!pem.includes("BEGIN PRIVATE KEY")) throw new Error("key-format");
  return crypto.subtle.importKey("pkcs8", derFromPem(pem), { name: "Ed25519" }, false, ["sign"]);
}

function utcSeconds(date) { return date.toISOString().replace(/\.\d{3}Z$/, "Z"); }

function nonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The statement the node verifies: canonical JSON (sorted keys, no whitespace, UTF-8).
export function decisionStatement({ policyId, version, hash, partnerId, decision, now = new Date() }) {
  const statement = {
    decision, kind: "loyalfed.policy_decision", nonce: nonce(), partner_id: partnerId, policy_hash: hash,
    policy_id: policyId, policy_version: version, signed_at: utcSeconds(now), v: 1,
  };
  return JSON.stringify(statement, Object.keys(statement).sort());
}

export async function signStatement(key, statement) {
  const signature = await crypto.subtle.sign({ name: "Ed25519" }, key, new TextEncoder().encode(statement));
  return btoa(String.fromCharCode(...new Uint8Array(signature)));
}
