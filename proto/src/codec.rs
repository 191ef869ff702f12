//! The protobuf codec of every generated service and client: prost's, except that a message
//! that does not decode (invalid UTF-8 in a string field, a truncated or malformed message) is
//! `INVALID_ARGUMENT` naming the field, where tonic answers `INTERNAL`. On a server the caller
//! sent bad bytes, which is their error to fix, not ours to page about. (A client meets the same
//! code for a response that does not decode, which our servers never send.)

use prost::Message;
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// `tonic_prost::ProstCodec` with decode failures answered `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct Codec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec {
            _types: PhantomData,
        }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = Decoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        Decoder(ProstDecoder::new(BufferSettings::default()))
    }
}

/// prost's decoder, its failures mapped to `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct Decoder<U>(ProstDecoder<U>);

impl<U: Message + Default> tonic::codec::Decoder for Decoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // prost's decoder fails only when the bytes are not a valid message.
        self.0.decode(buf).map_err(|status| {
            Status::invalid_argument(format!(
                "the request is not a valid protobuf message: {}",
                status.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
