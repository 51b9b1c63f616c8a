import FleetCore

/// Where replicated files go: a module (and optional sub-directory) on an rsync daemon.
///
/// Written as `rsync://USER@HOST[:PORT]/MODULE[/SUBDIR]`. The URL never carries a password:
/// the password comes from ``WatchConfig/passwordFile``.
public struct RsyncTarget: Sendable, Hashable {
  /// The daemon user (`auth users` on the daemon); `nil` for an anonymous module.
  public var user: String?
  /// The daemon's host name or address (IPv6 without brackets).
  public var host: String
  /// The daemon's TCP port; `nil` means rsync's default, 873.
  public var port: Int?
  /// The daemon module name.
  public var module: String
  /// A sub-directory inside the module, without leading or trailing slashes.
  public var subdir: String?

  /// Makes a target from its parts.
  public init(user: String?, host: String, port: Int? = nil, module: String, subdir: String? = nil) {
    self.user = user
    self.host = host
    self.port = port
    self.module = module
    self.subdir = subdir
  }

  /// Parses `rsync://USER@HOST[:PORT]/MODULE[/SUBDIR]`.
  ///
  /// - Throws: ``FleetError`` with code ``FleetError/Code/invalidInput`` naming what is wrong.
  public static func parse(_ url: String) throws -> RsyncTarget {
    func bad(_ why: String) -> FleetError {
      FleetError(
        .invalidInput,
        "invalid rsync target '\(url)': \(why); expected rsync://USER@HOST[:PORT]/MODULE[/SUBDIR]")
    }
    let scheme = "rsync://"
    guard url.hasPrefix(scheme) else { throw bad("it must start with rsync://") }
    var rest = Substring(url.dropFirst(scheme.count))
    guard let slash = rest.firstIndex(of: "/") else { throw bad("the module is missing") }
    var authority = rest[..<slash]
    rest = rest[rest.index(after: slash)...]

    var user: String?
    if let at = authority.lastIndex(of: "@") {
      let u = authority[..<at]
      if u.contains(":") { throw bad("a password must not be part of the URL; use a password file") }
      guard !u.isEmpty else { throw bad("the user before '@' is empty") }
      user = String(u)
      authority = authority[authority.index(after: at)...]
    }
    var host: Substring
    var port: Int?
    if authority.hasPrefix("[") {
      guard let close = authority.firstIndex(of: "]") else { throw bad("unclosed '[' in the host") }
      host = authority[authority.index(after: authority.startIndex)..<close]
      let after = authority[authority.index(after: close)...]
      if !after.isEmpty {
        guard after.hasPrefix(":") else { throw bad("unexpected text after the host") }
        guard let p = Int(after.dropFirst()) else { throw bad("the port is not a number") }
        port = p
      }
    } else if let colon = authority.lastIndex(of: ":") {
      host = authority[..<colon]
      guard let p = Int(authority[authority.index(after: colon)...]) else {
        throw bad("the port is not a number")
      }
      port = p
    } else {
      host = authority
    }
    guard !host.isEmpty else { throw bad("the host is empty") }
    if let p = port, !(1...65535).contains(p) { throw bad("the port must be in 1...65535") }

    let parts = rest.split(separator: "/", omittingEmptySubsequences: true)
    guard let module = parts.first else { throw bad("the module is missing") }
    if parts.contains(where: { $0 == ".." || $0 == "." }) {
      throw bad("'.' and '..' are not allowed in the module path")
    }
    let subdir = parts.count > 1 ? parts.dropFirst().joined(separator: "/") : nil
    let all = [user ?? "", String(host), String(module), subdir ?? ""]
    if all.contains(where: { $0.contains(where: { $0.isWhitespace || $0 == "\0" }) }) {
      throw bad("whitespace is not allowed")
    }
    return RsyncTarget(user: user, host: String(host), port: port, module: String(module), subdir: subdir)
  }

  /// The canonical URL, without a password, e.g. `rsync://backup@10.0.0.2:8730/data/web`.
  public var url: String {
    var s = "rsync://"
    if let user { s += "\(user)@" }
    s += host.contains(":") ? "[\(host)]" : host
    if let port { s += ":\(port)" }
    s += "/\(module)"
    if let subdir { s += "/\(subdir)" }
    return s
  }

  /// The destination argument for the rsync command line: the URL with a trailing slash.
  var destinationArgument: String { url + "/" }
}
