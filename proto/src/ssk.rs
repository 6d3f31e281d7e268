//! Signed-subspace key blocks (SSK): a block whose name belongs to whoever holds an
//! ed25519 key, so a name can be given out before, and stay put after, its content.
//!
//! Layout (exactly [`BLOCK_LEN`] bytes, like a CHK block; frozen by the vectors below):
//!
//! ```text
//! pubkey     32   the ed25519 verifying key of the name space
//! ehd        32   H("veil/ssk/name/v1" || crypto key || name): names the document
//!                 without revealing the name or the crypto key
//! signature  64   ed25519 over "veil/ssk/sig/v1" || ehd || nonce || sealed
//! nonce      12   random
//! sealed          ChaCha20-Poly1305(K, nonce, aad = "veil/ssk/v1", frame) || tag(16)
//!                 K     = H("veil/ssk/data-key/v1" || crypto key || name)
//!                 frame = u32 big-endian payload length || payload || zero padding
//!
//! pubkey hash  = H("veil/ssk/pubkey/v1" || pubkey)
//! routing key  = H("veil/ssk/routing-key/v1" || pubkey hash || ehd)
//! ```
//!
//! A URI gives a reader the pubkey hash, the crypto key and the name
//! (`veil:SSK@<pubkey hash>,<crypto key>/<name>`): enough to compute `ehd`, the routing
//! key and `K`. A node knows none of them, yet checks everything that matters to it from
//! the block alone: the routing key follows from the block's own pubkey and `ehd`, and
//! the signature from the pubkey. Only the key's holder can make a block that passes, and
//! no one but a URI holder can read it.
//!
//! Keyword keys (KSK) are SSKs whose key pair and crypto key derive from a phrase
//! ([`KeyPair::from_words`]): anyone who knows the phrase can read — and, by design,
//! anyone can be the first to publish under it.

use crate::block::{Block, BlockError, BLOCK_LEN};
use crate::keys::RoutingKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

const PUBKEY: usize = 32;
const EHD: usize = 32;
const SIG: usize = 64;
const NONCE: usize = 12;
const TAG: usize = 16;
/// Bytes before the sealed frame.
pub const HEADER_LEN: usize = PUBKEY + EHD + SIG + NONCE;
const FRAME: usize = BLOCK_LEN - HEADER_LEN - TAG;
/// The most payload one SSK block carries (32,628 bytes).
pub const MAX_SSK_PAYLOAD: usize = FRAME - 4;

const NAME_TAG: &[u8] = b"veil/ssk/name/v1";
const SIG_TAG: &[u8] = b"veil/ssk/sig/v1";
const DATA_KEY_TAG: &[u8] = b"veil/ssk/data-key/v1";
const PUBKEY_TAG: &[u8] = b"veil/ssk/pubkey/v1";
const ROUTING_TAG: &[u8] = b"veil/ssk/routing-key/v1";
const AAD: &[u8] = b"veil/ssk/v1";
const KSK_SIGNING_TAG: &[u8] = b"veil/ksk/signing-key/v1";
const KSK_CRYPTO_TAG: &[u8] = b"veil/ksk/crypto-key/v1";

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// What a reader needs to find and read a name space's documents: the hash of its
/// public key and its crypto key (the two keys of a `veil:SSK@` URI).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SskKeys {
    /// H("veil/ssk/pubkey/v1" || pubkey).
    pub pubkey_hash: [u8; 32],
    /// Encrypts and names the documents; never seen by nodes.
    pub crypto_key: [u8; 32],
}

impl SskKeys {
    /// `ehd` of the document `name`.
    pub fn ehd(&self, name: &str) -> [u8; 32] {
        hash(&[NAME_TAG, &self.crypto_key, name.as_bytes()])
    }

    /// The routing key of the document `name`.
    pub fn routing_key(&self, name: &str) -> RoutingKey {
        RoutingKey(hash(&[ROUTING_TAG, &self.pubkey_hash, &self.ehd(name)]))
    }

    fn data_key(&self, name: &str) -> [u8; 32] {
        hash(&[DATA_KEY_TAG, &self.crypto_key, name.as_bytes()])
    }

    /// Checks `block` as the document `name` (its routing key, signature and that it was
    /// made for this name) and decrypts its payload.
    pub fn open(&self, name: &str, block: &Block) -> Result<Vec<u8>, BlockError> {
        let key = self.routing_key(name);
        verify_ssk(block.as_bytes(), &key)?;
        let b = block.as_bytes();
        if b[PUBKEY..PUBKEY + EHD] != self.ehd(name) {
            return Err(BlockError::RoutingKeyMismatch);
        }
        let nonce = &b[PUBKEY + EHD + SIG..HEADER_LEN];
        let (frame, tag) = b[HEADER_LEN..].split_at(FRAME);
        let nonce: [u8; 12] = nonce.try_into().expect("12 bytes");
        let mut buf = crate::aead::open(&self.data_key(name), nonce, AAD, frame, tag)
            .ok_or(BlockError::Decrypt)?;
        let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_SSK_PAYLOAD {
            return Err(BlockError::BadFrame);
        }
        buf.copy_within(4..4 + len, 0);
        buf.truncate(len);
        Ok(buf)
    }
}

/// The hash of a public key, as URIs carry it.
pub fn pubkey_hash(pubkey: &[u8; 32]) -> [u8; 32] {
    hash(&[PUBKEY_TAG, pubkey])
}

/// A name space's key pair and crypto key: what its owner keeps secret.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
    /// Encrypts and names the documents.
    pub crypto_key: [u8; 32],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair({:?})", self.keys().pubkey_hash)
    }
}

impl KeyPair {
    /// A key pair from its 32-byte secret seed and crypto key.
    pub fn from_secret(seed: [u8; 32], crypto_key: [u8; 32]) -> KeyPair {
        KeyPair {
            signing: SigningKey::from_bytes(&seed),
            crypto_key,
        }
    }

    /// A fresh key pair from `rng`.
    pub fn generate(rng: &mut impl rand::RngCore) -> KeyPair {
        let mut seed = [0u8; 32];
        let mut ck = [0u8; 32];
        rng.fill_bytes(&mut seed);
        rng.fill_bytes(&mut ck);
        KeyPair::from_secret(seed, ck)
    }

    /// The keyword key pair of `words` (KSK): everyone who knows the words derives the
    /// same pair, so the words are the whole secret and the whole address.
    pub fn from_words(words: &str) -> KeyPair {
        KeyPair::from_secret(
            hash(&[KSK_SIGNING_TAG, words.as_bytes()]),
            hash(&[KSK_CRYPTO_TAG, words.as_bytes()]),
        )
    }

    /// The secret seed (for the keystore).
    pub fn secret_seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// What readers need.
    pub fn keys(&self) -> SskKeys {
        SskKeys {
            pubkey_hash: pubkey_hash(&self.public()),
            crypto_key: self.crypto_key,
        }
    }

    /// Encrypts and signs `payload` as the document `name`, with `nonce` (random for
    /// each block made; fixed only in test vectors).
    pub fn sign(
        &self,
        name: &str,
        payload: &[u8],
        nonce: [u8; 12],
    ) -> Result<(Block, RoutingKey), BlockError> {
        if payload.len() > MAX_SSK_PAYLOAD {
            return Err(BlockError::PayloadTooLarge(payload.len()));
        }
        let keys = self.keys();
        let ehd = keys.ehd(name);
        let mut out = vec![0u8; BLOCK_LEN];
        out[..PUBKEY].copy_from_slice(&self.public());
        out[PUBKEY..PUBKEY + EHD].copy_from_slice(&ehd);
        out[PUBKEY + EHD + SIG..HEADER_LEN].copy_from_slice(&nonce);
        {
            let (frame, tag_out) = out[HEADER_LEN..].split_at_mut(FRAME);
            frame[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
            frame[4..4 + payload.len()].copy_from_slice(payload);
            tag_out.copy_from_slice(&crate::aead::seal(&keys.data_key(name), nonce, AAD, frame));
        }
        let sig = self.signing.sign(&signed_bytes(&out));
        out[PUBKEY + EHD..PUBKEY + EHD + SIG].copy_from_slice(&sig.to_bytes());
        let block = Block::new(bytes::Bytes::from(out))?;
        Ok((block, keys.routing_key(name)))
    }
}

/// What the signature covers: the tag, `ehd`, the nonce and the sealed frame.
fn signed_bytes(block: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIG_TAG.len() + BLOCK_LEN);
    m.extend_from_slice(SIG_TAG);
    m.extend_from_slice(&block[PUBKEY..PUBKEY + EHD]);
    m.extend_from_slice(&block[PUBKEY + EHD + SIG..]);
    m
}

/// The routing key an SSK block names itself by (from its own pubkey and `ehd`).
pub fn claimed_routing_key(block: &[u8]) -> Option<RoutingKey> {
    if block.len() != BLOCK_LEN {
        return None;
    }
    let pubkey: [u8; 32] = block[..PUBKEY].try_into().ok()?;
    Some(RoutingKey(hash(&[
        ROUTING_TAG,
        &pubkey_hash(&pubkey),
        &block[PUBKEY..PUBKEY + EHD],
    ])))
}

/// Checks that `block` is a validly signed SSK block named by `key`. Needs no secret:
/// every node runs it before it stores, caches or forwards such a block.
pub fn verify_ssk(block: &[u8], key: &RoutingKey) -> Result<(), BlockError> {
    if block.len() != BLOCK_LEN {
        return Err(BlockError::WrongLength(block.len()));
    }
    if claimed_routing_key(block) != Some(*key) {
        return Err(BlockError::RoutingKeyMismatch);
    }
    let pubkey: [u8; 32] = block[..PUBKEY].try_into().expect("32 bytes");
    let vk = VerifyingKey::from_bytes(&pubkey).map_err(|_| BlockError::BadSignature)?;
    let sig = Signature::from_slice(&block[PUBKEY + EHD..PUBKEY + EHD + SIG])
        .map_err(|_| BlockError::BadSignature)?;
    vk.verify(&signed_bytes(block), &sig)
        .map_err(|_| BlockError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn pair() -> KeyPair {
        KeyPair::from_secret([7; 32], [9; 32])
    }

    /// Frozen: the pubkey hash, routing key and first bytes of a block made from fixed
    /// secrets and nonce (ed25519 signatures are deterministic). The expected values were
    /// computed independently with Python's `hashlib` and `cryptography` (Ed25519,
    /// ChaCha20Poly1305), not by this code.
    #[test]
    fn vectors() {
        let kp = pair();
        let keys = kp.keys();
        assert_eq!(
            hex(&kp.public()),
            "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
        );
        assert_eq!(
            hex(&keys.pubkey_hash),
            "b30d01b4b1c80937d4f8ef5794fc92a525615b5a4b97eede7953d2cfd0f6412e"
        );
        let (block, key) = kp.sign("doc", b"hello signed", [1; 12]).unwrap();
        assert_eq!(
            key.to_string(),
            "qwg2bSy53a5DMZ7KWYzuE7E0vI3-lF00kzOUJGCHtFw"
        );
        assert_eq!(
            hex(&block.as_bytes()[64..80]),
            "a2c822a91e717d6df21732c123cb65a1"
        );
        assert_eq!(
            hex(&block.as_bytes()[HEADER_LEN..HEADER_LEN + 16]),
            "b1dbcd78975251f9038cc83a788d9fac"
        );
        // KSK: the words are the keys.
        let ksk = KeyPair::from_words("free speech");
        assert_eq!(
            hex(&ksk.keys().pubkey_hash),
            "279923bbffaf86a9c8c5e70df2ebb1bbdfa55c4444941722b2600cd62f727a33"
        );
    }

    #[test]
    fn a_signed_block_verifies_and_opens() {
        let kp = pair();
        let (block, key) = kp.sign("doc", b"hello signed", [1; 12]).unwrap();
        assert_eq!(key, kp.keys().routing_key("doc"));
        assert_eq!(block.verify(&key), Ok(()));
        assert_eq!(kp.keys().open("doc", &block).unwrap(), b"hello signed");
        // Another name, another key: not this block.
        assert!(block.verify(&kp.keys().routing_key("other")).is_err());
        assert!(kp.keys().open("other", &block).is_err());
        // A reader with the wrong crypto key finds another routing key.
        let wrong = SskKeys {
            crypto_key: [1; 32],
            ..kp.keys()
        };
        assert_ne!(wrong.routing_key("doc"), key);
        let (big, _) = kp.sign("big", &vec![5; MAX_SSK_PAYLOAD], [2; 12]).unwrap();
        assert_eq!(kp.keys().open("big", &big).unwrap().len(), MAX_SSK_PAYLOAD);
        assert_eq!(
            kp.sign("big", &vec![5; MAX_SSK_PAYLOAD + 1], [2; 12])
                .unwrap_err(),
            BlockError::PayloadTooLarge(MAX_SSK_PAYLOAD + 1)
        );
    }

    #[test]
    fn forgeries_are_refused() {
        let kp = pair();
        let (block, key) = kp.sign("doc", b"hello signed", [1; 12]).unwrap();
        // Any flipped bit: the signature (or the routing key) no longer holds.
        for at in [0, 40, 70, HEADER_LEN - 1, HEADER_LEN + 3, BLOCK_LEN - 1] {
            let mut b = block.as_bytes().to_vec();
            b[at] ^= 1;
            let forged = Block::new(bytes::Bytes::from(b)).unwrap();
            assert!(forged.verify(&key).is_err(), "bit at {at}");
        }
        // Someone else's key pair signing the same name makes another routing key.
        let mallory = KeyPair::from_secret([8; 32], [9; 32]);
        let (theirs, their_key) = mallory.sign("doc", b"evil", [1; 12]).unwrap();
        assert_ne!(their_key, key);
        assert!(theirs.verify(&key).is_err());
        // Their block with our pubkey pasted in fails the signature.
        let mut b = theirs.as_bytes().to_vec();
        b[..32].copy_from_slice(&kp.public());
        let pasted = Block::new(bytes::Bytes::from(b)).unwrap();
        assert_eq!(
            verify_ssk(pasted.as_bytes(), &key),
            Err(BlockError::BadSignature)
        );
    }

    /// Frozen: how much one SSK block carries (docs/formats.md gives the frame as
    /// 32,632 bytes: a 4-byte length, then up to 32,628 of payload).
    #[test]
    fn an_ssk_block_carries_32628_bytes() {
        assert_eq!(FRAME, 32_632);
        assert_eq!(MAX_SSK_PAYLOAD, 32_628);
        assert_eq!(HEADER_LEN + 4 + MAX_SSK_PAYLOAD + TAG, BLOCK_LEN);
    }

    /// The keystore writes the seed and reads it back: the pair it gets is the same.
    #[test]
    fn the_secret_seed_gives_back_the_same_pair() {
        let kp = KeyPair::from_secret([3; 32], [4; 32]);
        assert_eq!(kp.secret_seed(), [3; 32]);
        let again = KeyPair::from_secret(kp.secret_seed(), kp.crypto_key);
        assert_eq!(again.public(), kp.public());
        let generated = KeyPair::generate(&mut rand::thread_rng());
        let again = KeyPair::from_secret(generated.secret_seed(), generated.crypto_key);
        assert_eq!(again.keys(), generated.keys());
    }

    /// A key pair in a log or a panic message shows which name space it is, never a secret.
    #[test]
    fn debug_names_the_pair_and_hides_its_secrets() {
        let kp = KeyPair::from_secret([0xab; 32], [0xcd; 32]);
        let shown = format!("{kp:?}");
        assert!(shown.starts_with("KeyPair("), "{shown}");
        assert!(
            shown.contains(&format!("{:?}", kp.keys().pubkey_hash)),
            "{shown}"
        );
        for secret in [171u8, 205] {
            assert!(!shown.contains(&format!("[{secret}, {secret}")), "{shown}");
        }
    }

    /// The owner of a name space is not trusted either: a block it sealed and signed
    /// with a frame length beyond the frame is refused, not read out of bounds.
    #[test]
    fn a_lying_frame_length_from_the_owner_is_refused() {
        let kp = pair();
        let keys = kp.keys();
        for lie in [MAX_SSK_PAYLOAD as u32 + 1, FRAME as u32, u32::MAX] {
            let (block, key) = kp.sign("doc", b"short", [1; 12]).unwrap();
            let mut b = block.as_bytes().to_vec();
            let nonce = [1u8; 12];
            let mut frame = vec![0u8; FRAME];
            frame[..4].copy_from_slice(&lie.to_be_bytes());
            frame[4..9].copy_from_slice(b"short");
            let tag = crate::aead::seal(&keys.data_key("doc"), nonce, AAD, &mut frame);
            b[HEADER_LEN..HEADER_LEN + FRAME].copy_from_slice(&frame);
            b[HEADER_LEN + FRAME..].copy_from_slice(&tag);
            let sig = kp.signing.sign(&signed_bytes(&b));
            b[PUBKEY + EHD..PUBKEY + EHD + SIG].copy_from_slice(&sig.to_bytes());
            let lying = Block::new(bytes::Bytes::from(b)).unwrap();
            // Nodes pass it (they cannot read it); the reader refuses it.
            assert_eq!(verify_ssk(lying.as_bytes(), &key), Ok(()));
            assert_eq!(keys.open("doc", &lying), Err(BlockError::BadFrame), "{lie}");
        }
    }

    proptest! {
        /// No bytes make the verifier panic, and random bytes never pass.
        #[test]
        fn hostile_bytes_never_pass(bytes in proptest::collection::vec(any::<u8>(), BLOCK_LEN..=BLOCK_LEN), key in any::<[u8; 32]>()) {
            let key = RoutingKey(key);
            prop_assert!(verify_ssk(&bytes, &key).is_err());
            if let Some(claimed) = claimed_routing_key(&bytes) {
                prop_assert!(verify_ssk(&bytes, &claimed).is_err());
            }
        }
    }
}
