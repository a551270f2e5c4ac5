//! Content digests (`algorithm:hex`), as the OCI image spec defines them.
//!
//! [`Digest`] is a validated newtype: only `sha256` (64 lowercase hex digits) and `sha512` (128) are
//! accepted, because those are the only algorithms a verifier can check; anything else is refused at
//! the edge rather than carried around unverifiable. [`DigestWriter`] hashes incrementally so blobs
//! are verified while they stream to disk, never after buffering them whole.

use std::fmt;
use std::io;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm that this crate can compute and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the registered default of the OCI image spec.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in a digest (`sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The number of hex digits in an encoded digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a digest was refused or did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The string has no `algorithm:` prefix.
    #[error("invalid digest {input:?}: expected algorithm:hex")]
    MissingAlgorithm {
        /// The string as given.
        input: String,
    },
    /// The algorithm is not one this crate can verify.
    #[error("invalid digest {input:?}: unsupported algorithm {algorithm:?} (sha256 or sha512)")]
    UnsupportedAlgorithm {
        /// The string as given.
        input: String,
        /// The algorithm part.
        algorithm: String,
    },
    /// The encoded part is not lowercase hex of the algorithm's length.
    #[error("invalid digest {input:?}: {algorithm} needs {expected} lowercase hex digits")]
    BadEncoding {
        /// The string as given.
        input: String,
        /// The algorithm.
        algorithm: Algorithm,
        /// How many hex digits the algorithm needs.
        expected: usize,
    },
    /// Content hashed to another digest than the one expected.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// The digest the content was supposed to have.
        expected: Digest,
        /// The digest the content actually has.
        actual: Digest,
    },
}

/// A validated content digest such as `sha256:e3b0c442…`.
///
/// Stored in its canonical string form, so [`Digest::as_str`] and [`fmt::Display`] cost nothing and
/// equal digests compare equal byte for byte.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    text: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(input: &str) -> Result<Digest, DigestError> {
        let Some((name, encoded)) = input.split_once(':') else {
            return Err(DigestError::MissingAlgorithm {
                input: input.to_owned(),
            });
        };
        let algorithm =
            Algorithm::from_name(name).ok_or_else(|| DigestError::UnsupportedAlgorithm {
                input: input.to_owned(),
                algorithm: name.to_owned(),
            })?;
        let well_formed = encoded.len() == algorithm.hex_len()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(DigestError::BadEncoding {
                input: input.to_owned(),
                algorithm,
                expected: algorithm.hex_len(),
            });
        }
        Ok(Digest {
            algorithm,
            text: input.to_owned(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::of_with(Algorithm::Sha256, data)
    }

    /// The digest of `data` with the given algorithm.
    pub fn of_with(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut writer = DigestWriter::new(algorithm);
        writer.update(data);
        writer.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The full `algorithm:hex` form.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Succeeds when `actual` equals `self`, else a [`DigestError::Mismatch`] naming both.
    pub fn verify(&self, actual: &Digest) -> Result<(), DigestError> {
        if self == actual {
            Ok(())
        } else {
            Err(DigestError::Mismatch {
                expected: self.clone(),
                actual: actual.clone(),
            })
        }
    }

    /// Hashes `data` with this digest's algorithm and verifies the result.
    pub fn verify_bytes(&self, data: &[u8]) -> Result<(), DigestError> {
        self.verify(&Digest::of_with(self.algorithm, data))
    }

    fn from_parts(algorithm: Algorithm, hash: &[u8]) -> Digest {
        Digest {
            algorithm,
            text: format!("{}:{}", algorithm.as_str(), hex::encode(hash)),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(digest: &Digest) -> Self {
        // A validated sha256/sha512 digest is always accepted by oci-spec's own parser.
        oci_spec::image::Digest::from_str(digest.as_str())
            .unwrap_or_else(|_| unreachable!("oci-spec rejected a validated digest {digest}"))
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;

    fn try_from(digest: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        Digest::parse(digest.as_ref())
    }
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// An incremental hasher producing a [`Digest`]; also an [`io::Write`] sink so it can sit behind
/// `io::copy` or a tee while a blob streams to disk.
pub struct DigestWriter {
    hasher: Hasher,
    written: u64,
}

impl DigestWriter {
    /// A hasher for `algorithm`, with nothing hashed yet.
    pub fn new(algorithm: Algorithm) -> DigestWriter {
        let hasher = match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        };
        DigestWriter { hasher, written: 0 }
    }

    /// Hashes more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
        self.written += data.len() as u64;
    }

    /// How many bytes were hashed so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// The digest of everything hashed.
    pub fn finish(self) -> Digest {
        match self.hasher {
            Hasher::Sha256(h) => Digest::from_parts(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_parts(Algorithm::Sha512, &h.finalize()),
        }
    }
}

impl fmt::Debug for DigestWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = match self.hasher {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        };
        f.debug_struct("DigestWriter")
            .field("algorithm", &algorithm)
            .field("written", &self.written)
            .finish()
    }
}

impl io::Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_accepts_sha256_and_sha512() {
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        let long = format!("sha512:{}", "ab".repeat(64));
        let d = Digest::parse(&long).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(d.hex(), "ab".repeat(64));
    }

    #[test]
    fn parse_rejects_malformed_digests() {
        let upper = EMPTY_SHA256.to_uppercase().replace("SHA256", "sha256");
        let short = &EMPTY_SHA256[..EMPTY_SHA256.len() - 1];
        let wrong_len_512 = format!("sha512:{}", "a".repeat(64));
        for bad in [
            "",
            "sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            upper.as_str(),
            short,
            wrong_len_512.as_str(),
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:zz",
            ":abc",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} accepted");
        }
        let err = Digest::parse("md5:00").unwrap_err();
        assert!(err.to_string().contains("unsupported algorithm"), "{err}");
    }

    #[test]
    fn of_hashes_with_sha256() {
        assert_eq!(Digest::of(b"").as_str(), EMPTY_SHA256);
        assert_eq!(
            Digest::of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(Digest::of_with(Algorithm::Sha512, b"abc")
            .hex()
            .starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn writer_hashes_incrementally_like_of() {
        let mut writer = DigestWriter::new(Algorithm::Sha256);
        writer.write_all(b"hello ").unwrap();
        writer.update(b"world");
        assert_eq!(writer.bytes_written(), 11);
        assert_eq!(writer.finish(), Digest::of(b"hello world"));
    }

    #[test]
    fn verify_names_both_digests_on_mismatch() {
        let expected = Digest::of(b"a");
        let actual = Digest::of(b"b");
        assert!(expected.verify(&expected.clone()).is_ok());
        let msg = expected.verify(&actual).unwrap_err().to_string();
        assert!(
            msg.contains(expected.as_str()) && msg.contains(actual.as_str()),
            "{msg}"
        );
        assert!(expected.verify_bytes(b"a").is_ok());
        assert!(expected.verify_bytes(b"b").is_err());
    }

    #[test]
    fn serde_uses_the_string_form_and_validates() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:nope\"").is_err());
    }

    #[test]
    fn converts_to_and_from_oci_spec_digests() {
        let d = Digest::of(b"x");
        let oci: oci_spec::image::Digest = (&d).into();
        assert_eq!(Digest::try_from(&oci).unwrap(), d);
    }
}
