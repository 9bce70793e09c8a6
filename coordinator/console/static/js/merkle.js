// The auditor's own checks, in the browser, so the console need not be trusted: a signed tree head
// verified with the auditor's pinned key, and an RFC 9162 §2.1.4.2 consistency proof from the head
// the auditor saved to the current one.

export function fromHex(hex) { return Uint8Array.from(hex.match(/../g) || [], (b) => parseInt(b, 16)); }
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) { out.set(p, offset); offset += p.length; }
  return out;
}
function u64(value) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(value)); return b; }
async function sha256(bytes) { return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)); }
function equal(a, b) { return a.length === b.length && a.every((x, i) => x === b[i]); }

// RFC 9162 §2.1.1: interior node hash = H(0x01 || left || right).
const nodeHash = (left, right) => sha256(concat(new Uint8Array([1]), left, right));

// The signed bytes of audit.tree_head: "loyalfed-sth/2" || log_id || size || time_ms || previous || root.
export async function verifyTreeHead(head, publicKeyHex) {
  const raw = fromHex(publicKeyHex);
  const logId = await sha256(raw);
  const message = concat(new TextEncoder().encode("loyalfed-sth/2"), logId, u64(head.tree_size), u64(head.timestamp_ms),
    u64(head.previous_size || 0), fromHex(head.root_hash));
  const key = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
  return crypto.subtle.verify({ name: "Ed25519" }, key, fromHex(head.signature), message);
}

// RFC 9162 §2.1.4.2 verification of a consistency proof between (first, firstRoot) and (second, secondRoot).
export async function verifyConsistency(first, second, firstRoot, secondRoot, proofHex) {
  if (first === second) return proofHex.length === 0 && equal(fromHex(firstRoot), fromHex(secondRoot));
  if (first === 0) return proofHex.length === 0;
  if (first > second || proofHex.length === 0) return false;
  let proof = proofHex.map(fromHex);
  if ((first & (first - 1)) === 0) proof = [fromHex(firstRoot), ...proof];
  let fn = first - 1, sn = second - 1;
  while (fn & 1) { fn >>= 1; sn >>= 1; }
  let fr = proof[0], sr = proof[0];
  for (const c of proof.slice(1)) {
    if (sn === 0) return false;
    if ((fn & 1) || fn === sn) {
      fr = await nodeHash(c, fr); sr = await nodeHash(c, sr);
      if (!(fn & 1)) { while (!(fn & 1) && fn !== 0) { fn >>= 1; sn >>= 1; } }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1; sn >>= 1;
  }
  return sn === 0 && equal(fr, fromHex(firstRoot)) && equal(sr, fromHex(secondRoot));
}
