import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A unix datagram socket bound by the test, standing in for systemd's `NOTIFY_SOCKET`.
final class AgentNotifySocket {
  let fd: Int32
  let path: String

  init(in scratch: AgentIT.Scratch) throws {
    path = scratch.path + "/notify.sock"
    fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard fd >= 0, bound == 0 else { throw AgentIT.Failure("cannot bind \(path)") }
  }

  deinit { close(fd) }

  /// Every datagram received so far.
  var received: [String] = []

  func drain() {
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      // Never waits: callers poll with `eventually`, and a blocking receive would hold a thread of
      // the test process's small cooperative pool.
      let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
      if n < 0 { return }
      received.append(String(decoding: buffer[0..<n], as: UTF8.self))
    }
  }

  func saw(_ line: String) -> Bool {
    drain()
    return received.contains { $0.split(separator: "\n").contains { $0 == line } }
  }
}

@Suite(
  "fleetsync-watch under systemd notify", .serialized, .dependsOnInotifyLimits, .enabled(if: AgentIT.canRun))
struct AgentNotifyTests {
  /// READY=1, WATCHDOG=1 and STOPPING=1 reach the notify socket; the password comes from
  /// RSYNC_PASSWORD only and shows up in no command line.
  @Test func notifiesSystemdAndTakesThePasswordFromTheEnvironment() async throws {
    let daemon = try RsyncDaemon()
    let scratch = try AgentIT.Scratch("notify")
    defer {
      daemon.stop()
      scratch.remove()
    }
    let notify = try AgentNotifySocket(in: scratch)
    let source = try scratch.dir("source")
    try "hello".write(toFile: source + "/hello.txt", atomically: false, encoding: .utf8)
    let agent = try AgentIT.Agent(
      ["--source", source, "--target", daemon.target.url, "--state-dir", scratch.path + "/state"],
      scratch: scratch,
      environment: [
        "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000", "RSYNC_PASSWORD": daemon.password,
      ])
    #expect(try await eventually { notify.saw("READY=1") }, "\(notify.received) \(agent.stderr)")
    #expect(try await eventually { notify.saw("WATCHDOG=1") }, "\(notify.received)")
    let copied = try await eventually {
      FileManager.default.fileExists(atPath: daemon.backup + "/hello.txt")
    }
    #expect(copied, "\(agent.stderr)")
    #expect(AgentIT.commandLinesContaining(daemon.password).isEmpty)
    #expect(try await agent.stop() == 0)
    #expect(notify.saw("STOPPING=1"), "\(notify.received)")
    #expect(!agent.stderr.contains(daemon.password))
  }

  /// A systemd that does not read its notify socket (busy, or stuck) must not stall the agent: with
  /// the socket's queue full (`net.unix.max_dgram_qlen` datagrams) it still replicates, and stops on
  /// SIGTERM. Blocking sends once stalled every task of the agent.
  @Test func anUnreadNotifySocketStallsNothing() async throws {
    let daemon = try RsyncDaemon()
    let scratch = try AgentIT.Scratch("notifyfull")
    defer {
      daemon.stop()
      scratch.remove()
    }
    let notify = try AgentNotifySocket(in: scratch)
    let source = try scratch.dir("source")
    try "one".write(toFile: source + "/one.txt", atomically: false, encoding: .utf8)
    let agent = try AgentIT.Agent(
      [
        "--source", source, "--target", daemon.target.url, "--password-file",
        try daemon.passwordFile(in: scratch), "--state-dir", scratch.path + "/state",
      ],
      scratch: scratch, environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "20000"])
    defer { if agent.process.isRunning { agent.crash() } }
    // Pings every 10 ms: the queue is full as soon as the agent runs; nothing reads it from here on.
    #expect(
      try await eventually { agent.stderr.contains("is full") }, "the queue never filled: \(agent.stderr)")
    #expect(try await eventually { FileManager.default.fileExists(atPath: daemon.backup + "/one.txt") })
    try "later".write(toFile: source + "/later.txt", atomically: false, encoding: .utf8)
    #expect(
      try await eventually { FileManager.default.fileExists(atPath: daemon.backup + "/later.txt") },
      "\(agent.stderr)")
    #expect(try await agent.stop() == 0, "\(agent.stderr)")
  }
}
