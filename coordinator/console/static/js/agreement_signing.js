// A data officer signs a points-interchange agreement in the browser with the key file from their own
// machine: the key stays in this page's memory (never uploaded), so the coordinator can verify the
// signature but cannot sign in the officer's name. The signed bytes are those of
// policies.interchange_agreement.sign_agreement: a domain-separation prefix, the agreement's sha256
// (hex), a zero byte and the partner id (Ed25519, RFC 8032).
const CONTEXT = "loyalfed interchange agreement v1\u0000";

function derFromPem(pem) {
  const body = pem.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
}

function hex(bytes) { return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join(""); }

function base64UrlToBytes(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

// The signature carries the officer's public key; WebCrypto gives it only through an extractable
// import, so the key is imported twice: once to read the public half (then dropped), once
// non-extractable for signing.
export async function importAgreementKey(file) {
  const pem = await file.text();
  if (!pem.includes("BEGIN PRIVATE KEY")) throw new Error("key-format");
  const der = derFromPem(pem);
  const readable = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
  const { x } = await crypto.subtle.exportKey("jwk", readable);
  const signing = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
  return { signing, publicKeyHex: hex(base64UrlToBytes(x)) };
}

function utcSeconds(date) { return date.toISOString().replace(/\.\d{3}Z$/, "Z"); }

export async function signAgreement(key, { hash, partner, officer, now = new Date() }) {
  const message = new TextEncoder().encode(`${CONTEXT}${hash}\u0000${partner}`);
  const signature = await crypto.subtle.sign({ name: "Ed25519" }, key.signing, message);
  return {
    partner, officer, agreement_hash: hash, public_key: key.publicKeyHex, signature: hex(signature),
    signed_at: utcSeconds(now),
  };
}
