"""Paillier's additively homomorphic encryption, for the intersection-sum mode.

P. Paillier, "Public-Key Cryptosystems Based on Composite Degree Residuosity Classes",
EUROCRYPT 1999, LNCS 1592, pp. 223-238. With g = n + 1 (Damgård-Jurik, PKC 2001, §3):
Enc(m; r) = (1 + m·n) · r^n mod n², Dec(c) = L(c^λ mod n²) · μ mod n with L(x) = (x - 1) / n.
Enc(a)·Enc(b) = Enc(a + b), which lets the initiator add up the responder's encrypted values over
the shared members without seeing them (Ion et al., "On Deploying Secure Computing: Private
Intersection-Sum-with-Cardinality", EuroS&P 2020, §3 — Google's private-join-and-compute).

The key holder encrypts with the Chinese remainder theorem (r^n mod p² and mod q²), ≈ 3× faster.
All big-number maths is gmpy2 (GMP); randomness comes from an injectable byte source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import gmpy2

from psi.errors import PaillierError
from psi.ristretto255 import Rng

__all__ = ["DEFAULT_KEY_BITS", "PaillierPrivateKey", "PaillierPublicKey", "generate_keypair"]

DEFAULT_KEY_BITS = 2048
_MIN_KEY_BITS = 1024  # only for tests; 2048 (≈ 112-bit security, NIST SP 800-57) is the default


def _random_below(n: gmpy2.mpz, rng: Rng) -> gmpy2.mpz:
    size = (int(n).bit_length() + 7) // 8 + 8  # 64 extra bits: negligible modulo bias
    return gmpy2.mpz(int.from_bytes(rng(size), "big")) % n


def _random_unit(n: gmpy2.mpz, rng: Rng) -> gmpy2.mpz:
    while True:
        r = _random_below(n, rng)
        if r > 1 and gmpy2.gcd(r, n) == 1:
            return r


def _random_prime(bits: int, rng: Rng) -> gmpy2.mpz:
    while True:
        candidate = gmpy2.mpz(int.from_bytes(rng(bits // 8), "big"))
        candidate |= (gmpy2.mpz(3) << (bits - 2)) | 1  # top two bits: n has exactly 2·bits bits
        prime = gmpy2.next_prime(candidate)
        if prime.bit_length() == bits and gmpy2.is_prime(prime, 50):
            return prime


@dataclass(frozen=True)
class PaillierPublicKey:
    """The public key: modulus n (g = n + 1)."""

    n: int

    def __post_init__(self) -> None:
        if self.n.bit_length() < _MIN_KEY_BITS or self.n % 2 == 0:
            raise PaillierError(f"Paillier modulus must be odd and ≥ {_MIN_KEY_BITS} bits")

    @property
    def n_square(self) -> int:
        return self.n * self.n

    @property
    def ciphertext_bytes(self) -> int:
        return (self.n_square.bit_length() + 7) // 8

    def encrypt(self, plaintext: int, rng: Rng = os.urandom) -> int:
        """Enc(m; r) with a fresh random r (Paillier 1999, §3)."""
        n = gmpy2.mpz(self.n)
        n2 = n * n
        if not 0 <= plaintext < self.n:
            raise PaillierError("Paillier plaintext out of range [0, n)")
        noise = gmpy2.powmod(_random_unit(n, rng), n, n2)
        return int((1 + gmpy2.mpz(plaintext) * n) * noise % n2)

    def add(self, left: int, right: int) -> int:
        """Enc(a) ⊕ Enc(b) = Enc(a + b mod n)."""
        return int(gmpy2.mpz(left) * right % self.n_square)

    def add_all(self, ciphertexts: list[int]) -> int:
        """Homomorphic sum of many ciphertexts (Enc(0) = 1 for an empty list)."""
        n2 = gmpy2.mpz(self.n_square)
        total = gmpy2.mpz(1)
        for c in ciphertexts:
            total = total * c % n2
        return int(total)

    def rerandomize(self, ciphertext: int, rng: Rng = os.urandom) -> int:
        """Multiply by a fresh Enc(0) so the key holder cannot tell which ciphertexts were added."""
        return self.add(ciphertext, self.encrypt(0, rng))

    def check_ciphertext(self, ciphertext: int) -> None:
        if not 0 < ciphertext < self.n_square or gmpy2.gcd(ciphertext, self.n) != 1:
            raise PaillierError("Paillier ciphertext out of range or not a unit mod n²")


@dataclass(frozen=True)
class PaillierPrivateKey:
    """The private key: the primes p, q of n = p·q."""

    p: int
    q: int

    @property
    def public_key(self) -> PaillierPublicKey:
        return PaillierPublicKey(self.p * self.q)

    def decrypt(self, ciphertext: int) -> int:
        """Dec(c) = L(c^λ mod n²)·μ mod n (Paillier 1999, §3)."""
        public = self.public_key
        public.check_ciphertext(ciphertext)
        n = gmpy2.mpz(public.n)
        n2 = n * n
        lam = gmpy2.lcm(self.p - 1, self.q - 1)
        mu = gmpy2.invert(lam, n)  # with g = n + 1, L(g^λ) = λ mod n
        return int((gmpy2.powmod(ciphertext, lam, n2) - 1) // n * mu % n)

    def encrypt_many(self, plaintexts: list[int], rng: Rng = os.urandom) -> list[int]:
        """Encrypt many values with CRT: r^n mod p² and mod q², recombined (Garner)."""
        n = gmpy2.mpz(self.p * self.q)
        n2 = n * n
        p2, q2 = gmpy2.mpz(self.p) ** 2, gmpy2.mpz(self.q) ** 2
        e_p, e_q = n % (p2 - p2 // self.p), n % (q2 - q2 // self.q)  # n mod φ(p²), n mod φ(q²)
        q2_inv = gmpy2.invert(q2, p2)
        out = []
        for m in plaintexts:
            if not 0 <= m < n:
                raise PaillierError("Paillier plaintext out of range [0, n)")
            r = _random_unit(n, rng)
            a, b = gmpy2.powmod(r % p2, e_p, p2), gmpy2.powmod(r % q2, e_q, q2)
            noise = b + q2 * ((a - b) * q2_inv % p2)
            out.append(int((1 + m * n) * noise % n2))
        return out


def generate_keypair(bits: int = DEFAULT_KEY_BITS, rng: Rng = os.urandom) -> PaillierPrivateKey:
    """A fresh key with an n of ``bits`` bits (two primes of ``bits / 2`` bits)."""
    if bits < _MIN_KEY_BITS or bits % 16:
        raise PaillierError(f"Paillier key size must be a multiple of 16 and ≥ {_MIN_KEY_BITS} bits")
    while True:
        p, q = _random_prime(bits // 2, rng), _random_prime(bits // 2, rng)
        if p != q and gmpy2.gcd(p * q, (p - 1) * (q - 1)) == 1:
            return PaillierPrivateKey(int(p), int(q))
