import FleetCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// What the last successful full sync made the backup equal to: the target and the excludes,
/// kept in the state directory (`last-full-sync`, no secret in it).
///
/// A restart may let its full sync wait for an idle moment (see
/// ``TransferDispatcher/startFullSyncNotAfter``) only when the backup was equal to this source with
/// these settings when the previous run stopped: a new target, or an exclude taken away, needs its
/// full sync at once.
enum FullSyncRecord {
  static let fileName = "last-full-sync"

  /// The record's text for `config`.
  static func text(for config: WatchConfig) -> String {
    var lines = ["target \(config.target.url)"]
    lines += config.excludes.map { "exclude \($0)" }
    return lines.joined(separator: "\n") + "\n"
  }

  /// Whether the state directory says the last successful full sync was made with `config`'s
  /// target and excludes.
  static func matches(_ config: WatchConfig) -> Bool {
    let path = config.stateDir + "/" + fileName
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    let want = Array(text(for: config).utf8)
    var buffer = [UInt8](repeating: 0, count: want.count + 1)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    return n == want.count && Array(buffer[0..<n]) == want
  }

  /// Records `config`'s target and excludes after a successful full sync.
  static func save(_ config: WatchConfig) throws {
    try AtomicFile.write(Array(text(for: config).utf8), to: config.stateDir + "/" + fileName, mode: 0o600)
  }

  /// Removes the record (see ``EngineCore/forgetFullSyncRecord()``).
  static func forget(_ config: WatchConfig) {
    unlink(config.stateDir + "/" + fileName)
  }
}
