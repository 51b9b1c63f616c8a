import FleetCore
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The controller's lock on one inventory: `up` and `down` hold it for their whole run, so two runs
/// from one checkout never interleave their writes to the fleet or to the controller's files.
///
/// It is an exclusive `flock` on `<secrets_file without .secrets>.lock`, beside the secrets file and
/// the port book. The kernel drops it when the holding process exits, however it exits, so a crashed
/// run never leaves it held. The holder writes who it is into the file (pid, host, command, since),
/// and a run that finds the lock held says so, at once or after waiting a bounded time. The file
/// itself stays: removing it would let a waiting run lock a file that no longer has a name.
/// `plan` and `status` only read, and take no lock.
public final class ControllerLock: Sendable {
  /// Who holds a lock: what the holder wrote into the lock file.
  public struct Holder: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Process id of the holding run.
    public var pid: Int32
    /// Host name of the machine it runs on.
    public var host: String
    /// Its command line.
    public var command: String
    /// When it took the lock.
    public var since: Date

    /// The holder of the current process, running `command`.
    public static func current(command: String) -> Holder {
      Holder(pid: getpid(), host: NodeLease.localHostName, command: command, since: Date())
    }

    public var description: String {
      "pid \(pid) on \(host) (`\(command)`), since \(since.formatted(.iso8601))"
    }
  }

  /// Path of the lock file.
  public let path: String
  private let fd: Mutex<Int32>

  private init(path: String, fd: Int32) {
    self.path = path
    self.fd = Mutex(fd)
  }

  deinit { release() }

  /// Takes the lock at `path` for a run of `command`, waiting at most `wait` for a run that holds it.
  ///
  /// - Throws: ``FleetError/Code/controllerLocked`` naming the holder when it is still held after
  ///   `wait`; ``FleetError/Code/localState`` when the lock file cannot be opened.
  public static func acquire(path: String, command: String, wait: Duration = .zero) async throws
    -> ControllerLock
  {
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
      throw FleetError(
        .localState,
        "cannot open the lock file \(path): \(String(cString: strerror(errno))); check that its directory "
          + "exists and is writable")
    }
    let deadline = ContinuousClock.now.advanced(by: wait)
    while flock(fd, LOCK_EX | LOCK_NB) != 0 {
      let busy = errno == EWOULDBLOCK
      guard busy, ContinuousClock.now < deadline, !Task.isCancelled else {
        let holder = busy ? await awaitHolder(fd) : nil
        close(fd)
        if !busy { throw FleetError(.localState, "cannot lock \(path): \(String(cString: strerror(errno)))") }
        throw heldError(path: path, holder: holder, waited: wait)
      }
      try? await Task.sleep(for: .milliseconds(200))
    }
    let lock = ControllerLock(path: path, fd: fd)
    lock.write(Holder.current(command: command))
    return lock
  }

  /// Who holds the lock at `path` now; nil when nobody does (or it cannot be read).
  public static func holder(path: String) -> Holder? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    guard flock(fd, LOCK_SH | LOCK_NB) != 0 else {
      flock(fd, LOCK_UN)
      return nil
    }
    return readHolder(fd)
  }

  /// Releases the lock (also done when the lock is deallocated or the process ends).
  ///
  /// It unlocks before closing: a child process being spawned at that moment holds a copy of the
  /// descriptor until its exec closes it, and closing alone would leave the lock held until then.
  public func release() {
    fd.withLock { fd in
      guard fd >= 0 else { return }
      flock(fd, LOCK_UN)
      close(fd)
      fd = -1
    }
  }

  private func write(_ holder: Holder) {
    let encoder = JSONEncoder()
    encoder.dateEncodingStrategy = .iso8601
    guard let data = try? encoder.encode(holder) else { return }
    fd.withLock { fd in
      _ = ftruncate(fd, 0)
      _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }
  }

  /// The holder of a busy lock. A run writes who it is just after it takes the lock, so a file that
  /// does not say yet is read again for up to a second before the holder counts as unknown.
  private static func awaitHolder(_ fd: Int32) async -> Holder? {
    for _ in 0..<20 {
      if let holder = readHolder(fd) { return holder }
      try? await Task.sleep(for: .milliseconds(50))
    }
    return readHolder(fd)
  }

  private static func readHolder(_ fd: Int32) -> Holder? {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    guard n > 0 else { return nil }
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return try? decoder.decode(Holder.self, from: Data(buffer[..<n]))
  }

  static func heldError(path: String, holder: Holder?, waited: Duration) -> FleetError {
    let who = holder.map { "\($0)" } ?? "a run that has not yet said who it is"
    let waitedText = waited > .zero ? " (waited \(waited.components.seconds)s)" : ""
    return FleetError(
      .controllerLocked,
      "another fleetsync run holds the lock on this inventory\(waitedText): \(who). Lock file: \(path). "
        + "Let that run finish, or run again with --wait-lock SECONDS to wait for it; the lock goes away by "
        + "itself when that process exits, so there is nothing to delete.")
  }
}

extension FleetError.Code {
  /// Another `up`/`down` run holds the controller's lock on this inventory.
  public static let controllerLocked = FleetError.Code("provision.locked", meaning: .failed)
}
