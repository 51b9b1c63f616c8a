import FleetCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The systemd notification protocol without libsystemd: datagrams to `$NOTIFY_SOCKET`.
///
/// Sends `READY=1`, `STATUS=...`, `WATCHDOG=1` and `STOPPING=1` as `sd_notify(3)` does. The
/// socket is a file path or, when it starts with `@`, an abstract socket name. Outside systemd
/// (no `NOTIFY_SOCKET`) every call does nothing, so callers need no special case.
public struct SystemdNotifier: Sendable {
  /// The socket datagrams go to; `nil` when the process is not run by systemd with `Type=notify`.
  public let socketPath: String?
  /// How often systemd expects `WATCHDOG=1` at the latest (`WatchdogSec=`); `nil` when off.
  public let watchdogTimeout: Duration?

  /// The interval the watchdog loop pings at: half the timeout, as systemd recommends.
  public var watchdogPingInterval: Duration? { watchdogTimeout.map { $0 / 2 } }

  /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment`.
  ///
  /// The watchdog is on only when `WATCHDOG_USEC` is a positive number and `WATCHDOG_PID`, if
  /// set, names this process (systemd sets it for the main process only).
  public init(environment: [String: String], pid: Int32 = getpid()) {
    let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    self.socketPath = path
    var timeout: Duration?
    if path != nil, let usec = environment["WATCHDOG_USEC"].flatMap({ UInt64($0) }), usec > 0 {
      let forUs = environment["WATCHDOG_PID"].map { Int32($0) == pid } ?? true
      if forUs { timeout = .microseconds(usec) }
    }
    self.watchdogTimeout = timeout
  }

  /// Reads the notification settings from the process environment.
  public static func fromProcessEnvironment() -> SystemdNotifier {
    var environment: [String: String] = [:]
    for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
      if let value = getenv(key) { environment[key] = String(cString: value) }
    }
    return SystemdNotifier(environment: environment)
  }

  /// Whether notifications go anywhere.
  public var isEnabled: Bool { socketPath != nil }

  /// Tells systemd that start-up is finished.
  public func ready(status: String? = nil) throws {
    try send(["READY=1"] + (status.map { ["STATUS=\(Self.oneLine($0))"] } ?? []))
  }

  /// Sets the one-line status `systemctl status` shows.
  public func status(_ text: String) throws {
    try send(["STATUS=\(Self.oneLine(text))"])
  }

  /// Tells systemd that the service is stopping.
  public func stopping() throws {
    try send(["STOPPING=1"])
  }

  /// Sends one watchdog keep-alive.
  public func watchdog() throws {
    try send(["WATCHDOG=1"])
  }

  /// One watchdog step: pings only if `isAlive()` says the watched work is making progress.
  ///
  /// - Returns: Whether a ping was sent.
  @discardableResult
  public func watchdogTick(isAlive: () -> Bool) throws -> Bool {
    guard isEnabled, isAlive() else { return false }
    try watchdog()
    return true
  }

  /// Pings the watchdog at half its timeout while `isAlive()` is true, until the task is cancelled.
  ///
  /// When `isAlive()` turns false (e.g. the engine's heartbeat is stale), pings stop and systemd
  /// restarts the service once `WatchdogSec` passes. Returns at once when the watchdog is off.
  public func runWatchdog(isAlive: @Sendable () -> Bool, onError: @Sendable (FleetError) -> Void) async {
    guard let interval = watchdogPingInterval else { return }
    while !Task.isCancelled {
      do {
        try watchdogTick(isAlive: isAlive)
      } catch let error as FleetError {
        onError(error)
      } catch {
        onError(FleetError.wrap(error, code: .healthNotify, "watchdog ping failed"))
      }
      do {
        try await Task.sleep(for: interval)
      } catch {
        return
      }
    }
  }

  /// Sends newline-separated `KEY=value` assignments in one datagram.
  ///
  /// Never waits: it runs on the cooperative pool, and a blocking send to a socket systemd does not
  /// read (its queue holds `net.unix.max_dgram_qlen` datagrams, 10 by default) would stall every task
  /// of the agent, transfers and shutdown included. A full queue drops the notification.
  ///
  /// - Throws: ``FleetError`` ``FleetError/Code/healthNotify`` when the socket cannot be reached or
  ///   its queue is full.
  public func send(_ assignments: [String]) throws {
    guard let socketPath else { return }
    let message = Array(assignments.joined(separator: "\n").utf8)
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw Self.posixError("cannot create a socket for NOTIFY_SOCKET") }
    defer { close(fd) }

    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var pathBytes = Array(socketPath.utf8)
    let isAbstract = pathBytes.first == UInt8(ascii: "@")
    if isAbstract { pathBytes[0] = 0 }
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard pathBytes.count < capacity else {
      throw FleetError(.healthNotify, "NOTIFY_SOCKET \(socketPath) is longer than a socket path may be")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
      raw.copyBytes(from: pathBytes)
    }
    let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2
    let length = socklen_t(pathOffset + pathBytes.count + (isAbstract ? 0 : 1))
    let sent = message.withUnsafeBytes { body in
      withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer in
          sendto(
            fd, body.baseAddress, body.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), sockaddrPointer, length)
        }
      }
    }
    guard sent == message.count else {
      if sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
        throw FleetError(
          .healthNotify,
          "systemd's NOTIFY_SOCKET \(socketPath) is full (systemd is not reading it); the notification was dropped"
        )
      }
      throw Self.posixError("cannot notify systemd at NOTIFY_SOCKET \(socketPath)")
    }
  }

  private static func oneLine(_ text: String) -> String {
    String(text.map { $0.isNewline ? " " : $0 })
  }

  private static func posixError(_ what: String) -> FleetError {
    let code = errno
    return FleetError(.healthNotify, "\(what): \(String(cString: strerror(code)))")
  }
}
