import FleetCore

/// The two files a module's secret is kept in on its hosts, each format defined once: a watcher's
/// password file and the lines of an rsync daemon's secrets file.
///
/// rsync checks only the first line of a secrets file that names the user (`check_secret` in
/// rsync's authenticate.c stops looking for the name after one mismatch), so a module has exactly
/// one line, and a secret is replaced in that line.
enum SecretFiles {
  /// A watcher's password file: the secret and a newline (rsync reads the first line).
  static func password(_ secret: Secret) -> [UInt8] { Array((secret.revealed + "\n").utf8) }

  /// The secret a watcher's password file holds (its first line), nil when it holds none.
  static func password(in bytes: [UInt8]) -> Secret? {
    let line = bytes.split(separator: 10, omittingEmptySubsequences: false).first ?? []
    let value = line.last == 13 ? Array(line.dropLast()) : Array(line)
    return value.isEmpty ? nil : Secret(bytes: value)
  }

  /// The line of `module`'s user in an rsync daemon's secrets file: `fs-MODULE:SECRET`.
  static func daemonLine(module: String, _ secret: Secret) -> String {
    "\(Layout.authUser(module: module)):\(secret.revealed)\n"
  }

  /// The secret a daemon's secrets file holds for `module`'s user: the value of its first line, the
  /// only one rsync checks; nil when no line names the user.
  static func daemonSecret(module: String, in bytes: [UInt8]) -> Secret? {
    let prefix = Array((Layout.authUser(module: module) + ":").utf8)
    for line in bytes.split(separator: 10) where line.starts(with: prefix) {
      let value = line.dropFirst(prefix.count)
      return Secret(bytes: Array(value.last == 13 ? value.dropLast() : value))
    }
    return nil
  }

  /// `bytes` with the value of the line of `module`'s user set to `secret` and every other line as
  /// it was; nil when no line names the user (the module is not set up in that daemon).
  static func replacingDaemonSecret(module: String, with secret: Secret, in bytes: [UInt8]) -> [UInt8]? {
    let prefix = Array((Layout.authUser(module: module) + ":").utf8)
    var lines = bytes.split(separator: 10, omittingEmptySubsequences: false).map(Array.init)
    guard let index = lines.firstIndex(where: { $0.starts(with: prefix) }) else { return nil }
    lines[index] = prefix + secret.withBytes { $0 }
    return Array(lines.joined(separator: [10]))
  }
}
