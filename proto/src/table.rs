//! The two macros that turn the field lists of `message.rs` into types, encoders and
//! decoders, so each message's layout is written exactly once.
//!
//! A field is written `name: RustType => Codec`, optionally followed by `as "label"` when the
//! name shown in decode errors differs from the Rust name (`docs/protocol.md` names). Fields
//! are encoded, and decoded, in the order listed.

/// The name a field carries in decode errors: its label, else its Rust name.
macro_rules! field_label {
    ($f:ident) => {
        stringify!($f)
    };
    ($f:ident, $label:literal) => {
        $label
    };
}

/// A struct whose fields are encoded in order: defines it and implements
/// [`Record`](crate::codec::Record) for it.
macro_rules! record {
    (
        $(#[$sm:meta])*
        pub struct $name:ident {
            $(
                $(#[$fm:meta])*
                pub $f:ident : $t:ty => $codec:ty $(as $label:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[$sm])*
        pub struct $name {
            $( $(#[$fm])* pub $f: $t, )*
        }

        impl $crate::codec::Record for $name {
            const MIN_LEN: usize =
                0 $( + <$codec as $crate::codec::Wire<$t>>::MIN_LEN )*;

            fn put(&self, w: &mut $crate::codec::Enc<'_>) {
                $( <$codec as $crate::codec::Wire<$t>>::put(&self.$f, w); )*
            }

            fn get(
                d: &mut $crate::codec::Dec<'_>,
            ) -> ::std::result::Result<Self, $crate::error::ProtoError> {
                Ok($name {
                    $(
                        $f: <$codec as $crate::codec::Wire<$t>>::get(
                            d,
                            field_label!($f $(, $label)?),
                        )?,
                    )*
                })
            }
        }
    };
}

/// The message table: for each message, its docs, variant, type code, name (in errors and
/// `Display`) and fields — one tuple field `(name: Type => Codec)` or named fields
/// `{ ... }`. Generates [`MsgType`](crate::MsgType), [`Message`](crate::Message), and the
/// payload encoder and decoder.
macro_rules! messages {
    ($(
        $(#[$vm:meta])*
        $variant:ident = $code:literal, $name:literal
        $( ( $tf:ident : $tt:ty => $tc:ty ) )?
        $( {
            $(
                $(#[$fm:meta])*
                $f:ident : $ft:ty => $fc:ty $(as $label:literal)?
            ),* $(,)?
        } )?
    ;)*) => {
        /// Message type codes (`type` field of the frame header).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum MsgType {
            $(
                #[doc = concat!("[`Message::", stringify!($variant), "`], type ", stringify!($code), ".")]
                $variant = $code,
            )*
        }

        impl MsgType {
            /// The type for a code, if known.
            pub fn from_code(c: u16) -> Option<MsgType> {
                match c {
                    $( $code => Some(MsgType::$variant), )*
                    _ => None,
                }
            }

            /// Its name in errors and logs (`hello`, `symtab-chunk`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $( MsgType::$variant => $name, )*
                }
            }
        }

        /// One protocol message.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message {
            $(
                $(#[$vm])*
                $variant $( ($tt) )? $( { $( $(#[$fm])* $f: $ft, )* } )?,
            )*
        }

        impl Message {
            /// Its type code.
            pub fn msg_type(&self) -> MsgType {
                match self {
                    $( Message::$variant { .. } => MsgType::$variant, )*
                }
            }

            /// Appends the payload (the fields, without the frame header).
            pub(crate) fn put_payload(&self, w: &mut $crate::codec::Enc<'_>) {
                match self {
                    $(
                        Message::$variant $( ($tf) )? $( { $( $f, )* } )? => {
                            $( <$tc as $crate::codec::Wire<$tt>>::put($tf, w); )?
                            $( $( <$fc as $crate::codec::Wire<$ft>>::put($f, w); )* )?
                        }
                    )*
                }
            }

            /// Reads the fields of a `t` payload (trailing bytes are the caller's check).
            pub(crate) fn get_payload(
                t: MsgType,
                d: &mut $crate::codec::Dec<'_>,
            ) -> ::std::result::Result<Message, $crate::error::ProtoError> {
                Ok(match t {
                    $(
                        MsgType::$variant => Message::$variant
                            $( (<$tc as $crate::codec::Wire<$tt>>::get(d, stringify!($tf))?) )?
                            $( { $(
                                $f: <$fc as $crate::codec::Wire<$ft>>::get(
                                    d,
                                    field_label!($f $(, $label)?),
                                )?,
                            )* } )?,
                    )*
                })
            }
        }
    };
}
