//! How a layer blob is compressed, and a reader that undoes it while streaming.

use std::io::{self, Read};

/// The compression of a layer blob, as its media type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerCompression {
    /// A plain tar stream.
    None,
    /// gzip (`+gzip`, Docker's `.tar.gzip`).
    Gzip,
    /// zstd (`+zstd`).
    Zstd,
}

impl LayerCompression {
    /// Wraps `compressed` in a reader that yields the uncompressed tar stream.
    pub fn decompress<'a, R: Read + 'a>(self, compressed: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            LayerCompression::None => Box::new(compressed),
            // MultiGzDecoder: some image builders write a layer as several concatenated members.
            LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
            LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(compressed)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(compression: LayerCompression, compressed: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        compression
            .decompress(compressed.as_slice())
            .and_then(|mut r| r.read_to_end(&mut out))
            .expect("decompress");
        out
    }

    #[test]
    fn each_compression_yields_the_original_bytes() {
        let data = b"layer bytes ".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let zst = zstd::encode_all(data.as_slice(), 3).expect("zstd");
        assert_eq!(roundtrip(LayerCompression::None, data.clone()), data);
        assert_eq!(roundtrip(LayerCompression::Gzip, gz), data);
        assert_eq!(roundtrip(LayerCompression::Zstd, zst), data);
    }
}
