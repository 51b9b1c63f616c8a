import FleetCore
import FleetHealth
import FleetWatch
import FleetWire
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// `fleetsync-watch check`: asks a running agent how it is, for supervisors that are not systemd.
///
/// It reads the agent's `/status` on the configured health port with a short deadline and tells
/// *hung* (no answer in time, or an answer saying the event loop has stalled: what systemd's watchdog
/// would restart) from *unhealthy* (it answers and says why it is not replicating: waiting for its
/// source, the backup unreachable; a restart would not help).
public enum HealthCheck {
  /// What the check found; ``exitStatus`` is the command's exit status.
  public enum Verdict: Equatable, Sendable {
    /// The agent answers and is healthy (exit 0).
    case healthy
    /// The agent answers and says why it is not healthy (exit 1). Not a reason to restart it.
    case unhealthy(String)
    /// No answer in time, or the agent says its event loop has stalled (exit 2): restart it.
    case hung(String)

    /// 0 healthy, 1 unhealthy, 2 hung.
    public var exitStatus: Int32 {
      switch self {
      case .healthy: 0
      case .unhealthy: 1
      case .hung: 2
      }
    }

    /// One line for people and logs.
    public var line: String {
      switch self {
      case .healthy: "healthy"
      case .unhealthy(let reason): "unhealthy: \(reason)"
      case .hung(let reason): "hung: \(reason)"
      }
    }
  }

  /// How long the whole request may take by default.
  public static let defaultTimeout: Duration = .seconds(5)

  /// Checks the agent that `settings` configure.
  ///
  /// - Throws: ``FleetError`` ``FleetError/Code/agentConfig`` when the settings have no health port.
  public static func check(_ settings: AgentSettings, timeout: Duration = defaultTimeout) throws -> Verdict {
    guard let port = settings.healthPort else {
      throw FleetError(
        .agentConfig,
        "the config sets no health-port, so there is nothing to ask; add `health-port = PORT` to check the agent"
      )
    }
    let host = connectAddress(settings.healthAddress)
    let body: [UInt8]
    do {
      body = try HealthClient.get("/status", host: host, port: port, timeout: timeout)
    } catch {
      return .hung("no answer from \(host):\(port) within \(Int(timeout.inSeconds)) s: \(error)")
    }
    return verdict(statusBody: body, now: Date())
  }

  /// The verdict on the body of an agent's `/status`, read at `now`.
  static func verdict(statusBody body: [UInt8], now: Date) -> Verdict {
    let document: AgentStatusDocument<WatchStatus>
    do {
      document = try AgentStatusDocument<WatchStatus>.decode(json: String(decoding: body, as: UTF8.self))
    } catch {
      return .unhealthy("its /status is not what this fleetsync-watch reads: \(error)")
    }
    let status = document.engine
    if status.isStalled(at: now) {
      return .hung("event loop stalled: no heartbeat for \(Int(status.heartbeatAge(at: now))) s")
    }
    if document.healthy { return .healthy }
    return .unhealthy(AgentHealthSource.verdict(for: status, now: now).reason)
  }

  /// Where to connect for a bind address: the loopback of the same family for a wildcard.
  static func connectAddress(_ bind: String) -> String {
    switch bind {
    case "0.0.0.0", "": "127.0.0.1"
    case "::", "[::]": "::1"
    default: bind
    }
  }
}

/// A minimal HTTP/1.1 GET over a POSIX socket with one deadline for connect, send and receive, so a
/// stopped agent (SIGSTOP: the kernel accepts, nobody answers) cannot hang the check.
enum HealthClient {
  static func get(_ path: String, host: String, port: Int, timeout: Duration) throws -> [UInt8] {
    let deadline = ContinuousClock.now + timeout
    let fd = try openConnection(host: host, port: port, deadline: deadline)
    defer { close(fd) }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n".utf8)
    var sent = 0
    while sent < request.count {
      try wait(fd, for: Int16(POLLOUT), until: deadline)
      let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if n < 0 && errno != EAGAIN && errno != EINTR {
        throw SocketError("send: \(String(cString: strerror(errno)))")
      }
      sent += max(n, 0)
    }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      try wait(fd, for: Int16(POLLIN), until: deadline)
      let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n == 0 { break }
      if n < 0 {
        if errno == EAGAIN || errno == EINTR { continue }
        throw SocketError("recv: \(String(cString: strerror(errno)))")
      }
      response.append(contentsOf: chunk[0..<n])
      guard response.count < 16 << 20 else { throw SocketError("the answer is too large") }
    }
    return try body(of: response)
  }

  /// The body of a `200` or `503` response (the agent's two answers).
  static func body(of response: [UInt8]) throws -> [UInt8] {
    let separator: [UInt8] = Array("\r\n\r\n".utf8)
    guard let end = response.firstRange(of: separator) else { throw SocketError("not an HTTP answer") }
    let statusLine = String(decoding: response[..<end.lowerBound], as: UTF8.self).prefix { $0 != "\r" }
    let parts = statusLine.split(separator: " ")
    guard parts.count >= 2, parts[1] == "200" || parts[1] == "503" else {
      throw SocketError("unexpected answer: \(statusLine)")
    }
    return Array(response[end.upperBound...])
  }

  private static func openConnection(host: String, port: Int, deadline: ContinuousClock.Instant) throws
    -> Int32
  {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = AI_NUMERICSERV
    var list: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &list)
    guard rc == 0, let first = list else {
      throw SocketError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
    }
    defer { freeaddrinfo(list) }
    let fd = socket(
      first.pointee.ai_family,
      first.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
    guard fd >= 0 else { throw SocketError("socket: \(String(cString: strerror(errno)))") }
    if connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) != 0 && errno != EINPROGRESS {
      let message = String(cString: strerror(errno))
      close(fd)
      throw SocketError("connect: \(message)")
    }
    do {
      try wait(fd, for: Int16(POLLOUT), until: deadline)
      var error: Int32 = 0
      var length = socklen_t(MemoryLayout<Int32>.size)
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
      if error != 0 { throw SocketError("connect: \(String(cString: strerror(error)))") }
    } catch {
      close(fd)
      throw error
    }
    return fd
  }

  /// Waits until `fd` is ready for `events`, or throws when `deadline` passes first.
  private static func wait(_ fd: Int32, for events: Int16, until deadline: ContinuousClock.Instant) throws {
    while true {
      let left = ContinuousClock.now.duration(to: deadline)
      guard left > .zero else { throw SocketError("timed out") }
      var entry = pollfd(fd: fd, events: events, revents: 0)
      let rc = poll(&entry, 1, Int32(clamping: Int((left.inSeconds * 1000).rounded(.up))))
      if rc > 0 { return }
      if rc < 0 && errno != EINTR { throw SocketError("poll: \(String(cString: strerror(errno)))") }
    }
  }
}

extension HealthCheck {
  /// The command line's entry point: checks the agent `configFile` configures, prints the verdict
  /// (one line, on standard output) and returns the exit status: 0 healthy, 1 unhealthy, 2 hung,
  /// 64 when the config cannot be read or has no health port.
  public static func main(configFile: String, timeoutSeconds: Int) -> Int32 {
    do {
      guard timeoutSeconds >= 1 else {
        throw FleetError(.agentConfig, "--timeout must be at least 1 second")
      }
      let settings = try AgentSettings.load(file: configFile)
      let verdict = try check(settings, timeout: .seconds(timeoutSeconds))
      print(verdict.line)
      return verdict.exitStatus
    } catch {
      AgentOutput.standardError("fleetsync-watch: error: \(WatchAgent.describe(error))")
      return AgentExitStatus.usage
    }
  }
}

/// A failure to talk to the agent, for the check's message.
struct SocketError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
