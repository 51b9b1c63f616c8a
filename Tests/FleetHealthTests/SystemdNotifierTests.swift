import FleetCore
import FleetHealth
import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A unix datagram socket bound by the test: stands in for systemd's notify socket.
final class NotifySocket {
  let fd: Int32
  /// The value for `NOTIFY_SOCKET`.
  let name: String
  private let path: String?

  /// Binds a socket at a file path, or an abstract name (`@...`) when `abstract` is true.
  init(abstract: Bool) throws {
    fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { throw TestSocketError("socket") }
    let unique = "fleetsync-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes: [UInt8]
    if abstract {
      name = "@" + unique
      path = nil
      bytes = [0] + Array(unique.utf8)
    } else {
      let file = NSTemporaryDirectory() + "/" + unique + ".sock"
      name = file
      path = file
      bytes = Array(file.utf8)
    }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let length = socklen_t(
      MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (abstract ? 0 : 1))
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw TestSocketError("bind \(name)") }
    // A bound for a datagram that never comes; a loaded machine may take long to send one.
    var timeout = timeval(tv_sec: Int(Wait.deadline.components.seconds), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
  }

  deinit {
    close(fd)
    if let path { unlink(path) }
  }

  /// Waits (up to the receive timeout, ``Wait/deadline``) for one datagram.
  func receive() -> String? {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    return n < 0 ? nil : String(decoding: buffer[0..<n], as: UTF8.self)
  }

  /// A datagram already queued, without waiting.
  func receiveNow() -> String? {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
    return n < 0 ? nil : String(decoding: buffer[0..<n], as: UTF8.self)
  }
}

@Suite("systemd notify over a real datagram socket")
struct SystemdNotifierTests {
  @Test(arguments: [false, true])
  func readyStatusStoppingArrive(abstract: Bool) throws {
    let socket = try NotifySocket(abstract: abstract)
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name])
    #expect(notifier.isEnabled)
    try notifier.ready(status: "watching\nqueue 0")
    #expect(socket.receive() == "READY=1\nSTATUS=watching queue 0")
    try notifier.status("retrying")
    #expect(socket.receive() == "STATUS=retrying")
    try notifier.stopping()
    #expect(socket.receive() == "STOPPING=1")
  }

  /// systemd not reading its socket (its queue holds `net.unix.max_dgram_qlen` datagrams) must never
  /// block the sender: the agent sends from the cooperative pool, and a blocked send stalled every task
  /// of it, transfers and shutdown included. A full queue drops the notification and says so.
  @Test(.timeLimit(.minutes(1))) func aFullSocketDropsInsteadOfBlocking() throws {
    let socket = try NotifySocket(abstract: false)
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name])
    var dropped: FleetError?
    for _ in 0..<10_000 where dropped == nil {
      do { try notifier.watchdog() } catch let error as FleetError { dropped = error }
    }
    #expect(dropped?.code == .healthNotify)
    #expect(dropped?.message.contains("is full") == true, "\(String(describing: dropped))")
    #expect(socket.receiveNow() == "WATCHDOG=1")
    // Once systemd reads again, notifications arrive again.
    while socket.receiveNow() != nil {}
    try notifier.stopping()
    #expect(socket.receive() == "STOPPING=1")
  }

  @Test func watchdogPingsOnlyWhileAlive() throws {
    let socket = try NotifySocket(abstract: false)
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name, "WATCHDOG_USEC": "30000000"])
    #expect(notifier.watchdogTimeout == .seconds(30))
    #expect(notifier.watchdogPingInterval == .seconds(15))

    #expect(try notifier.watchdogTick(isAlive: { true }))
    #expect(socket.receive() == "WATCHDOG=1")
    // A stale heartbeat: the tick sends nothing (sending is synchronous, so nothing can arrive later).
    #expect(try notifier.watchdogTick(isAlive: { false }) == false)
    #expect(socket.receiveNow() == nil)
  }

  @Test func watchdogLoopPingsAtHalfTheTimeout() async throws {
    let socket = try NotifySocket(abstract: true)
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name, "WATCHDOG_USEC": "200000"])
    let loop = Task { await notifier.runWatchdog(isAlive: { true }, onError: { _ in }) }
    // Block on a thread of its own: a blocking recv on the cooperative pool (2 threads here) could
    // starve the very loop it waits for when other tests hold the other thread.
    let fd = socket.fd
    let (first, second) = await withCheckedContinuation { continuation in
      Thread { continuation.resume(returning: (Self.receive(fd), Self.receive(fd))) }.start()
    }
    loop.cancel()
    await loop.value
    #expect(first == "WATCHDOG=1")
    #expect(second == "WATCHDOG=1")
  }

  static func receive(_ fd: Int32) -> String? {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    return n < 0 ? nil : String(decoding: buffer[0..<n], as: UTF8.self)
  }

  @Test func watchdogIsOffForAnotherPidOrWithoutSocket() {
    let other = SystemdNotifier(
      environment: ["NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"], pid: 4242)
    #expect(other.watchdogTimeout == nil)
    let ours = SystemdNotifier(
      environment: ["NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "4242"], pid: 4242)
    #expect(ours.watchdogTimeout == .seconds(1))
    let outside = SystemdNotifier(environment: ["WATCHDOG_USEC": "1000000"])
    #expect(!outside.isEnabled)
    #expect(outside.watchdogTimeout == nil)
  }

  @Test func unreachableSocketIsAnError() {
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify.sock"])
    #expect(throws: (any Error).self) { try notifier.ready() }
  }
}

struct TestSocketError: Error, CustomStringConvertible {
  var description: String
  init(_ what: String) { description = "\(what) failed: errno \(errno)" }
}
