//! WinDivert's enumerations and constants: layers, events, flags, parameters, priorities.

use core::fmt;

/// A WinDivert layer (`WINDIVERT_LAYER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Layer {
    /// IP packets to and from the local machine (the default layer).
    Network = 0,
    /// IP packets passing through (forwarded by) the machine.
    NetworkForward = 1,
    /// Flow established/deleted events.
    Flow = 2,
    /// Socket operations: bind, connect, listen, accept, close.
    Socket = 3,
    /// Open/close events of divert handles.
    Reflect = 4,
}

impl Layer {
    /// All layers, in numeric order.
    pub const ALL: [Layer; 5] = [
        Layer::Network,
        Layer::NetworkForward,
        Layer::Flow,
        Layer::Socket,
        Layer::Reflect,
    ];

    /// The layer for a numeric value, or `None` when it is out of range.
    pub const fn from_u32(v: u32) -> Option<Layer> {
        match v {
            0 => Some(Layer::Network),
            1 => Some(Layer::NetworkForward),
            2 => Some(Layer::Flow),
            3 => Some(Layer::Socket),
            4 => Some(Layer::Reflect),
            _ => None,
        }
    }

    /// WinDivert's macro name of the layer (`NETWORK`, `NETWORK_FORWARD`, ...).
    pub const fn macro_name(self) -> &'static str {
        match self {
            Layer::Network => "NETWORK",
            Layer::NetworkForward => "NETWORK_FORWARD",
            Layer::Flow => "FLOW",
            Layer::Socket => "SOCKET",
            Layer::Reflect => "REFLECT",
        }
    }

    /// Parse a layer name as used on the command line: `network`, `network_forward`
    /// (also `forward`, `network-forward`), `flow`, `socket`, `reflect`, case-insensitive,
    /// or its number.
    pub fn parse(s: &str) -> Option<Layer> {
        let l = s.trim().to_ascii_lowercase().replace('-', "_");
        match l.as_str() {
            "network" | "0" => Some(Layer::Network),
            "network_forward" | "forward" | "1" => Some(Layer::NetworkForward),
            "flow" | "2" => Some(Layer::Flow),
            "socket" | "3" => Some(Layer::Socket),
            "reflect" | "4" => Some(Layer::Reflect),
            _ => None,
        }
    }

    /// Whether this layer carries packet data (NETWORK and NETWORK_FORWARD).
    pub const fn is_network(self) -> bool {
        matches!(self, Layer::Network | Layer::NetworkForward)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.macro_name())
    }
}

/// A WinDivert event (`WINDIVERT_EVENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Event {
    /// A network packet (NETWORK and NETWORK_FORWARD).
    NetworkPacket = 0,
    /// A flow was established (FLOW).
    FlowEstablished = 1,
    /// A flow was deleted (FLOW).
    FlowDeleted = 2,
    /// A socket was bound (SOCKET).
    SocketBind = 3,
    /// A socket connected (SOCKET).
    SocketConnect = 4,
    /// A socket started listening (SOCKET).
    SocketListen = 5,
    /// A socket accepted a connection (SOCKET).
    SocketAccept = 6,
    /// A socket was closed or its binding released (SOCKET).
    SocketClose = 7,
    /// A divert handle was opened (REFLECT).
    ReflectOpen = 8,
    /// A divert handle was closed (REFLECT).
    ReflectClose = 9,
}

impl Event {
    /// `WINDIVERT_EVENT_MAX`.
    pub const MAX: u8 = 9;

    /// The event for a numeric value.
    pub const fn from_u8(v: u8) -> Option<Event> {
        Some(match v {
            0 => Event::NetworkPacket,
            1 => Event::FlowEstablished,
            2 => Event::FlowDeleted,
            3 => Event::SocketBind,
            4 => Event::SocketConnect,
            5 => Event::SocketListen,
            6 => Event::SocketAccept,
            7 => Event::SocketClose,
            8 => Event::ReflectOpen,
            9 => Event::ReflectClose,
            _ => return None,
        })
    }

    /// The layer this event belongs to (NETWORK for `NetworkPacket`).
    pub const fn layer(self) -> Layer {
        match self {
            Event::NetworkPacket => Layer::Network,
            Event::FlowEstablished | Event::FlowDeleted => Layer::Flow,
            Event::SocketBind
            | Event::SocketConnect
            | Event::SocketListen
            | Event::SocketAccept
            | Event::SocketClose => Layer::Socket,
            Event::ReflectOpen | Event::ReflectClose => Layer::Reflect,
        }
    }

    /// Whether the event may occur at `layer`.
    pub const fn valid_for(self, layer: Layer) -> bool {
        match self {
            Event::NetworkPacket => layer.is_network(),
            _ => self.layer() as u8 == layer as u8,
        }
    }

    /// WinDivert's macro name of the event (`PACKET`, `ESTABLISHED`, ...).
    pub const fn macro_name(self) -> &'static str {
        match self {
            Event::NetworkPacket => "PACKET",
            Event::FlowEstablished => "ESTABLISHED",
            Event::FlowDeleted => "DELETED",
            Event::SocketBind => "BIND",
            Event::SocketConnect => "CONNECT",
            Event::SocketListen => "LISTEN",
            Event::SocketAccept => "ACCEPT",
            Event::SocketClose | Event::ReflectClose => "CLOSE",
            Event::ReflectOpen => "OPEN",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.macro_name())
    }
}

/// Open flags (`WINDIVERT_FLAG_*`), a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u64);

/// Why a flag combination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagsError {
    /// A bit that is not a WinDivert flag is set.
    UnknownBits(u64),
    /// SNIFF and DROP together.
    SniffAndDrop,
    /// RECV_ONLY and SEND_ONLY together.
    RecvOnlyAndSendOnly,
    /// The layer requires flags that are missing (FLOW: SNIFF|RECV_ONLY, SOCKET: RECV_ONLY,
    /// REFLECT: SNIFF|RECV_ONLY).
    MissingForLayer {
        /// The layer.
        layer: Layer,
        /// The flags it requires.
        required: Flags,
    },
}

impl fmt::Display for FlagsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagsError::UnknownBits(b) => write!(f, "unknown flag bits {b:#x}"),
            FlagsError::SniffAndDrop => f.write_str("SNIFF and DROP cannot be combined"),
            FlagsError::RecvOnlyAndSendOnly => {
                f.write_str("RECV_ONLY and SEND_ONLY cannot be combined")
            }
            FlagsError::MissingForLayer { layer, required } => {
                write!(f, "the {layer} layer requires the flags {required}")
            }
        }
    }
}

impl std::error::Error for FlagsError {}

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// Copy packets instead of diverting them.
    pub const SNIFF: Flags = Flags(0x0001);
    /// Drop matching packets silently.
    pub const DROP: Flags = Flags(0x0002);
    /// Receive only: sending is refused.
    pub const RECV_ONLY: Flags = Flags(0x0004);
    /// Alias of [`Flags::RECV_ONLY`].
    pub const READ_ONLY: Flags = Flags::RECV_ONLY;
    /// Send only: receiving is refused.
    pub const SEND_ONLY: Flags = Flags(0x0008);
    /// Alias of [`Flags::SEND_ONLY`].
    pub const WRITE_ONLY: Flags = Flags::SEND_ONLY;
    /// Do not install anything if the service is missing.
    pub const NO_INSTALL: Flags = Flags(0x0010);
    /// Receive inbound IP fragments instead of reassembled packets.
    pub const FRAGMENTS: Flags = Flags(0x0020);
    /// Every valid bit.
    pub const ALL: Flags = Flags(0x003F);

    /// Flags from raw bits (not validated; see [`Flags::validate`]).
    pub const fn from_bits_retain(bits: u64) -> Flags {
        Flags(bits)
    }
    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }
    /// Union.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// WinDivert's flag validity rules, without the per-layer requirements (see
    /// [`Flags::validate_for`]).
    ///
    /// ```
    /// use lindivert_core::types::FlagsError;
    /// use lindivert_core::{Flags, Layer};
    ///
    /// assert!((Flags::SNIFF | Flags::FRAGMENTS).validate().is_ok());
    /// assert_eq!((Flags::SNIFF | Flags::DROP).validate(), Err(FlagsError::SniffAndDrop));
    /// assert_eq!(Flags::from_bits_retain(0x100).validate(), Err(FlagsError::UnknownBits(0x100)));
    ///
    /// // FLOW handles must be SNIFF | RECV_ONLY.
    /// assert!(Flags::SNIFF.validate_for(Layer::Flow).is_err());
    /// assert!((Flags::SNIFF | Flags::RECV_ONLY).validate_for(Layer::Flow).is_ok());
    /// assert_eq!((Flags::SNIFF | Flags::RECV_ONLY).to_string(), "SNIFF|RECV_ONLY");
    /// ```
    pub fn validate(self) -> Result<(), FlagsError> {
        if self.0 & !Flags::ALL.0 != 0 {
            return Err(FlagsError::UnknownBits(self.0 & !Flags::ALL.0));
        }
        if self.contains(Flags::SNIFF.union(Flags::DROP)) {
            return Err(FlagsError::SniffAndDrop);
        }
        if self.contains(Flags::RECV_ONLY.union(Flags::SEND_ONLY)) {
            return Err(FlagsError::RecvOnlyAndSendOnly);
        }
        Ok(())
    }

    /// The flags a layer requires (FLOW: SNIFF|RECV_ONLY, SOCKET: RECV_ONLY,
    /// REFLECT: SNIFF|RECV_ONLY).
    pub const fn required_for(layer: Layer) -> Flags {
        match layer {
            Layer::Network | Layer::NetworkForward => Flags::NONE,
            Layer::Flow | Layer::Reflect => Flags(0x0005),
            Layer::Socket => Flags::RECV_ONLY,
        }
    }

    /// [`Flags::validate`] plus the per-layer requirements.
    pub fn validate_for(self, layer: Layer) -> Result<(), FlagsError> {
        self.validate()?;
        let required = Flags::required_for(layer);
        if !self.contains(required) {
            return Err(FlagsError::MissingForLayer { layer, required });
        }
        Ok(())
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Flags, &str); 6] = [
            (Flags::SNIFF, "SNIFF"),
            (Flags::DROP, "DROP"),
            (Flags::RECV_ONLY, "RECV_ONLY"),
            (Flags::SEND_ONLY, "SEND_ONLY"),
            (Flags::NO_INSTALL, "NO_INSTALL"),
            (Flags::FRAGMENTS, "FRAGMENTS"),
        ];
        let mut first = true;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let unknown = self.0 & !Flags::ALL.0;
        if unknown != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{unknown:#x}")?;
            first = false;
        }
        if first {
            f.write_str("0")?;
        }
        Ok(())
    }
}

/// Handle parameters (`WINDIVERT_PARAM_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Param {
    /// Maximum number of packets in the receive queue.
    QueueLength = 0,
    /// Minimum time, in milliseconds, a packet may wait in the queue before it is dropped.
    QueueTime = 1,
    /// Maximum number of bytes in the receive queue.
    QueueSize = 2,
    /// The major version (read-only): 2.
    VersionMajor = 3,
    /// The minor version (read-only): 2.
    VersionMinor = 4,
}

/// Why a parameter operation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamError {
    /// Not a parameter number.
    Unknown(u32),
    /// The parameter cannot be set.
    ReadOnly(Param),
    /// The value lies outside `[min, max]`.
    OutOfRange {
        /// The parameter.
        param: Param,
        /// The refused value.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Unknown(p) => write!(f, "unknown parameter {p}"),
            ParamError::ReadOnly(p) => write!(f, "parameter {p:?} is read-only"),
            ParamError::OutOfRange {
                param,
                value,
                min,
                max,
            } => write!(f, "{param:?} = {value} is outside [{min}, {max}]"),
        }
    }
}

impl std::error::Error for ParamError {}

impl Param {
    /// `WINDIVERT_PARAM_MAX`.
    pub const MAX: u32 = 4;

    /// The parameter for a number.
    pub const fn from_u32(v: u32) -> Option<Param> {
        Some(match v {
            0 => Param::QueueLength,
            1 => Param::QueueTime,
            2 => Param::QueueSize,
            3 => Param::VersionMajor,
            4 => Param::VersionMinor,
            _ => return None,
        })
    }

    /// The default value.
    pub const fn default_value(self) -> u64 {
        match self {
            Param::QueueLength => 4096,
            Param::QueueTime => 2000,
            Param::QueueSize => 4_194_304,
            Param::VersionMajor => 2,
            Param::VersionMinor => 2,
        }
    }

    /// The smallest value that can be set.
    pub const fn min(self) -> u64 {
        match self {
            Param::QueueLength => 32,
            Param::QueueTime => 100,
            Param::QueueSize => 65535,
            Param::VersionMajor | Param::VersionMinor => self.default_value(),
        }
    }

    /// The largest value that can be set.
    pub const fn max(self) -> u64 {
        match self {
            Param::QueueLength => 16384,
            Param::QueueTime => 16000,
            Param::QueueSize => 33_554_432,
            Param::VersionMajor | Param::VersionMinor => self.default_value(),
        }
    }

    /// Whether the parameter can be set.
    pub const fn is_writable(self) -> bool {
        !matches!(self, Param::VersionMajor | Param::VersionMinor)
    }

    /// Check a value for [`Param`] before setting it.
    ///
    /// ```
    /// use lindivert_core::types::ParamError;
    /// use lindivert_core::Param;
    ///
    /// assert_eq!(Param::QueueLength.default_value(), 4096);
    /// assert!(Param::QueueLength.check(8192).is_ok());
    /// let err = Param::QueueLength.check(20000).unwrap_err();
    /// assert!(matches!(err, ParamError::OutOfRange { min: 32, max: 16384, .. }));
    /// assert_eq!(err.to_string(), "QueueLength = 20000 is outside [32, 16384]");
    /// assert_eq!(Param::VersionMajor.check(2), Err(ParamError::ReadOnly(Param::VersionMajor)));
    /// ```
    pub fn check(self, value: u64) -> Result<(), ParamError> {
        if !self.is_writable() {
            return Err(ParamError::ReadOnly(self));
        }
        if value < self.min() || value > self.max() {
            return Err(ParamError::OutOfRange {
                param: self,
                value,
                min: self.min(),
                max: self.max(),
            });
        }
        Ok(())
    }
}

/// A handle priority, `-30000..=30000`; higher sees packets first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Priority(i16);

impl Priority {
    /// `WINDIVERT_PRIORITY_LOWEST`.
    pub const LOWEST: Priority = Priority(-30000);
    /// `WINDIVERT_PRIORITY_HIGHEST`.
    pub const HIGHEST: Priority = Priority(30000);
    /// The usual default, 0.
    pub const DEFAULT: Priority = Priority(0);

    /// A priority, or `None` when outside `-30000..=30000`.
    pub const fn new(p: i32) -> Option<Priority> {
        if p < -30000 || p > 30000 {
            None
        } else {
            Some(Priority(p as i16))
        }
    }

    /// The value.
    pub const fn get(self) -> i16 {
        self.0
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a handle is shut down (`WINDIVERT_SHUTDOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Shutdown {
    /// Stop receiving new packets; queued ones can still be read.
    Recv = 1,
    /// Refuse further sends.
    Send = 2,
    /// Both.
    Both = 3,
}

impl Shutdown {
    /// The shutdown mode for a number.
    pub const fn from_u32(v: u32) -> Option<Shutdown> {
        match v {
            1 => Some(Shutdown::Recv),
            2 => Some(Shutdown::Send),
            3 => Some(Shutdown::Both),
            _ => None,
        }
    }
}

/// `WINDIVERT_BATCH_MAX`: packets per batched receive or send.
pub const BATCH_MAX: usize = 255;
/// `WINDIVERT_MTU_MAX`: the largest packet copied to user space.
pub const MTU_MAX: usize = 40 + 0xFFFF;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_validation() {
        assert!(Flags::NONE.validate().is_ok());
        assert!(Flags::ALL.validate().is_err());
        assert_eq!(
            (Flags::SNIFF | Flags::DROP).validate(),
            Err(FlagsError::SniffAndDrop)
        );
        assert_eq!(
            (Flags::RECV_ONLY | Flags::SEND_ONLY).validate(),
            Err(FlagsError::RecvOnlyAndSendOnly)
        );
        assert_eq!(
            Flags::from_bits_retain(0x40).validate(),
            Err(FlagsError::UnknownBits(0x40))
        );
        assert!(Flags::SNIFF.validate_for(Layer::Flow).is_err());
        assert!((Flags::SNIFF | Flags::RECV_ONLY)
            .validate_for(Layer::Flow)
            .is_ok());
        assert!(Flags::RECV_ONLY.validate_for(Layer::Socket).is_ok());
        assert!(Flags::NONE.validate_for(Layer::Socket).is_err());
        assert_eq!(
            (Flags::SNIFF | Flags::FRAGMENTS).to_string(),
            "SNIFF|FRAGMENTS"
        );
    }

    #[test]
    fn params_bounds() {
        assert_eq!(Param::QueueLength.default_value(), 4096);
        assert!(Param::QueueLength.check(31).is_err());
        assert!(Param::QueueLength.check(32).is_ok());
        assert!(Param::QueueLength.check(16384).is_ok());
        assert!(Param::QueueLength.check(16385).is_err());
        assert!(Param::QueueTime.check(99).is_err());
        assert!(Param::QueueTime.check(16000).is_ok());
        assert!(Param::QueueSize.check(65534).is_err());
        assert!(Param::QueueSize.check(33_554_432).is_ok());
        assert!(Param::QueueSize.check(33_554_433).is_err());
        assert_eq!(
            Param::VersionMajor.check(2),
            Err(ParamError::ReadOnly(Param::VersionMajor))
        );
        assert_eq!(Param::from_u32(5), None);
    }

    #[test]
    fn priority_bounds() {
        assert!(Priority::new(30001).is_none());
        assert!(Priority::new(-30001).is_none());
        assert_eq!(Priority::new(-30000), Some(Priority::LOWEST));
        assert_eq!(Priority::new(30000), Some(Priority::HIGHEST));
    }

    #[test]
    fn layer_names() {
        for l in Layer::ALL {
            assert_eq!(Layer::parse(l.macro_name()), Some(l));
            assert_eq!(Layer::from_u32(l as u32), Some(l));
        }
        assert_eq!(Layer::parse("forward"), Some(Layer::NetworkForward));
        assert_eq!(Layer::from_u32(5), None);
        assert!(Event::SocketClose.valid_for(Layer::Socket));
        assert!(Event::NetworkPacket.valid_for(Layer::NetworkForward));
        assert!(!Event::ReflectOpen.valid_for(Layer::Socket));
    }
}
