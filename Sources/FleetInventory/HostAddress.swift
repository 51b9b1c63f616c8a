import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The machine an inventory `address` names, as far as the text alone tells (no DNS lookup): two
/// addresses are equal when they are spellings of one address.
///
/// - IPv4 in every form the resolver accepts as numeric (`10.0.0.1`, `10.1`, `0x0a000001`), and
///   IPv4-mapped IPv6 (`::ffff:10.0.0.1`), are the same IPv4 address.
/// - IPv6 in any spelling (`fd00::1`, `FD00:0:0::1`) is the same IPv6 address.
/// - Loopback is one machine, the controller's own: `localhost`, `*.localhost` (RFC 6761), all of
///   127.0.0.0/8, `::1`, and the unspecified `0.0.0.0` / `::` (connecting there reaches this machine).
/// - A DNS name is compared without case and without a trailing dot. Two different names for one
///   machine (a DNS alias) cannot be told from the text; `fleetsync` finds them when it reads the
///   hosts' facts.
struct HostAddress: Sendable, Hashable, CustomStringConvertible {
  /// The normal form: `loopback`, `ipv4 A.B.C.D`, `ipv6 X:…`, or `dns name`.
  let key: String

  /// The normal form of `text`, an address as the inventory accepts it.
  init(_ text: String) {
    var name = text.lowercased()
    if name.hasSuffix(".") { name.removeLast() }
    if name == "localhost" || name.hasSuffix(".localhost") {
      key = "loopback"
    } else if let v4 = Self.ipv4(name) {
      key = Self.isLocal(v4) ? "loopback" : "ipv4 \(Self.dotted(v4))"
    } else if let v6 = Self.ipv6(name) {
      if v6.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
        let v4 = v6.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        key = Self.isLocal(v4) ? "loopback" : "ipv4 \(Self.dotted(v4))"
      } else if v6.prefix(15).allSatisfy({ $0 == 0 }) && v6[15] <= 1 {
        key = "loopback"
      } else {
        key =
          "ipv6 "
          + stride(from: 0, to: 16, by: 2).map { String(UInt16(v6[$0]) << 8 | UInt16(v6[$0 + 1]), radix: 16) }
          .joined(separator: ":")
      }
    } else {
      key = "dns \(name)"
    }
  }

  /// Whether the address is the controller's own machine.
  var isLoopback: Bool { key == "loopback" }

  var description: String { key }

  /// An IPv4 address in host byte order, in any numeric form `inet_aton` (and so the resolver) takes.
  static func ipv4(_ text: String) -> UInt32? {
    guard !text.isEmpty, text.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == "x" }) else { return nil }
    var address = in_addr()
    guard inet_aton(text, &address) != 0 else { return nil }
    return UInt32(bigEndian: address.s_addr)
  }

  /// The 16 bytes of an IPv6 address.
  static func ipv6(_ text: String) -> [UInt8]? {
    guard text.contains(":") else { return nil }
    var address = in6_addr()
    guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
    return withUnsafeBytes(of: &address) { Array($0) }
  }

  /// 127.0.0.0/8 or 0.0.0.0.
  static func isLocal(_ v4: UInt32) -> Bool { v4 >> 24 == 127 || v4 == 0 }

  static func dotted(_ v4: UInt32) -> String {
    [24, 16, 8, 0].map { String((v4 >> $0) & 0xff) }.joined(separator: ".")
  }
}
