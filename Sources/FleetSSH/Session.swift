import CLibSSH2
import FleetCore
import Logging

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Process-wide libssh2 setup: `libssh2_init` runs exactly once (Swift's lazy statics are thread-safe
/// once-initialisers); `libssh2_exit` is never called, because sessions may live until the process ends.
enum LibSSH2 {
  private static let initResult: Int32 = libssh2_init(0)

  /// Initialises libssh2 on first use.
  static func ensureInitialized() throws {
    guard initResult == 0 else {
      throw FleetError(.internal, "libssh2_init failed (\(initResult)): is libssh2 installed correctly?")
    }
  }
}

/// One libssh2 session over one non-blocking TCP socket.
///
/// Not thread-safe: ``SSHConnection`` makes sure only one pool thread uses it at a time. Every call that
/// may return `LIBSSH2_ERROR_EAGAIN` goes through ``Session/retry(_:_:what:code:_:)``, which polls the
/// socket in the direction libssh2 is blocked on, bounded by the operation's deadline, sending keepalives
/// while idle, and wakes at once when the operation is cancelled.
final class Session {
  let endpoint: SSHEndpoint
  let raw: OpaquePointer
  let fd: Int32
  let logger: Logger
  private let keepaliveEnabled: Bool
  /// The SFTP subsystem, opened on first use.
  private var sftpHandle: OpaquePointer?
  /// Set once the transport failed (timeout mid-protocol, socket error); later calls fail fast.
  var brokenReason: FleetError?
  /// Whether authentication succeeded. Before it, a timeout or a failed transport means the host is
  /// unreachable (nothing was done there); after it, that an operation on a reachable host failed.
  private(set) var loggedIn = false

  private init(endpoint: SSHEndpoint, raw: OpaquePointer, fd: Int32, keepalive: Bool, logger: Logger) {
    self.endpoint = endpoint
    self.raw = raw
    self.fd = fd
    self.keepaliveEnabled = keepalive
    self.logger = logger
  }

  deinit {
    if let sftpHandle { _ = libssh2_sftp_shutdown(sftpHandle) }
    libssh2_session_free(raw)
    close(fd)
  }

  // MARK: - Connect

  /// Connects, does the SSH handshake, verifies the host key and authenticates, all before `deadline`.
  static func connect(
    to endpoint: SSHEndpoint, options: SSHOptions, control: OperationControl, logger: Logger
  ) throws -> Session {
    try LibSSH2.ensureInitialized()
    let deadline = Deadline(after: options.connectTimeout)
    let fd = try connectSocket(endpoint, deadline: deadline, control: control)
    guard let raw = fleetsync_session_init() else {
      close(fd)
      throw FleetError(.internal, "libssh2 could not allocate a session for \(endpoint)")
    }
    let session = Session(
      endpoint: endpoint, raw: raw, fd: fd, keepalive: options.keepaliveInterval > .zero, logger: logger)
    libssh2_session_set_blocking(raw, 0)
    _ = libssh2_session_method_pref(
      raw, LIBSSH2_METHOD_HOSTKEY,
      "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521")
    do {
      _ = try session.retry(control, deadline, what: "SSH handshake", code: .sshProtocol) {
        libssh2_session_handshake(raw, fd)
      }
    } catch let error as FleetError where error.code == .sshUnreachable && deadline.hasPassed {
      throw FleetError(
        .sshUnreachable,
        "SSH handshake with \(endpoint) did not finish within \(deadline.limitText): the port answers but "
          + "not like an SSH server, or the host is overloaded")
    }
    try HostKeyVerifier.verify(
      session: session, file: options.knownHostsFile, policy: options.hostKeyPolicy)
    try Authenticator.authenticate(session, identity: options.identity, control: control, deadline: deadline)
    session.loggedIn = true
    if options.keepaliveInterval > .zero {
      let seconds = max(1, options.keepaliveInterval.components.seconds)
      libssh2_keepalive_config(raw, 1, UInt32(clamping: seconds))
      session.dropWhenUnanswered(afterSeconds: seconds * deadPeerKeepalives)
    }
    logger.debug("connected", metadata: ["host": "\(endpoint)"])
    return session
  }

  /// How many keepalive intervals the host may leave what was sent unacknowledged before the
  /// connection counts as lost (OpenSSH's `ServerAliveCountMax`, 3).
  static let deadPeerKeepalives: Int64 = 3

  /// Has the kernel end the connection once data sent (a command, a keepalive) stays unacknowledged
  /// for `seconds` (`TCP_USER_TIMEOUT`): a host cut off the network mid-command then fails the
  /// operation as ``FleetError/Code/sshConnectionLost`` within a few keepalives, instead of waiting
  /// for the operation's deadline (minutes) while TCP retransmits.
  private func dropWhenUnanswered(afterSeconds seconds: Int64) {
    var milliseconds = UInt32(clamping: seconds * 1000)
    _ = setsockopt(
      fd, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, &milliseconds, socklen_t(MemoryLayout<UInt32>.size))
  }

  /// Opens a non-blocking TCP connection to the first address of the host that accepts.
  private static func connectSocket(
    _ endpoint: SSHEndpoint, deadline: Deadline, control: OperationControl
  ) throws -> Int32 {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_family = AF_UNSPEC
    var list: UnsafeMutablePointer<addrinfo>?
    let gai = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list)
    guard gai == 0, let list else {
      throw FleetError(
        .sshUnreachable,
        "cannot resolve \(endpoint): \(String(cString: gai_strerror(gai))); check the host name")
    }
    defer { freeaddrinfo(list) }
    var lastError: FleetError?
    var cursor: UnsafeMutablePointer<addrinfo>? = list
    while let ai = cursor {
      cursor = ai.pointee.ai_next
      let fd = socket(
        ai.pointee.ai_family,
        Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
          | Int32(SOCK_CLOEXEC.rawValue), 0)
      if fd < 0 { continue }
      var one: Int32 = 1
      _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
      do {
        try connectOne(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen, endpoint, deadline, control)
        return fd
      } catch let error as FleetError {
        close(fd)
        if error.code == .cancelled || error.code == .sshUnreachable && deadline.hasPassed { throw error }
        lastError = error
      }
    }
    throw lastError ?? FleetError(.sshUnreachable, "no usable address for \(endpoint)")
  }

  private static func connectOne(
    _ fd: Int32, _ addr: UnsafeMutablePointer<sockaddr>?, _ len: socklen_t, _ endpoint: SSHEndpoint,
    _ deadline: Deadline, _ control: OperationControl
  ) throws {
    if Glibc.connect(fd, addr, len) == 0 { return }
    var err = errno
    if err == EINPROGRESS {
      while true {
        if control.isCancelled { throw FleetError(.cancelled, "connecting to \(endpoint) was cancelled") }
        let left = deadline.remainingMilliseconds
        if left == 0 {
          throw FleetError(
            .sshUnreachable,
            "\(endpoint) did not answer within \(deadline.limitText): check that the host is up and "
              + "reachable (network, firewall), or raise the connect timeout")
        }
        var fds = [pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)]
        if control.eventFD >= 0 { fds.append(pollfd(fd: control.eventFD, events: Int16(POLLIN), revents: 0)) }
        let r = poll(&fds, nfds_t(fds.count), control.eventFD >= 0 ? left : min(left, 100))
        if r < 0 && errno != EINTR { err = errno; break }
        if fds[0].revents != 0 {
          var soError: Int32 = 0
          var soLen = socklen_t(MemoryLayout<Int32>.size)
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &soLen)
          if soError == 0 { return }
          err = soError
          break
        }
      }
    }
    let reason = String(cString: strerror(err))
    switch err {
    case ECONNREFUSED:
      throw FleetError(
        .sshConnect,
        "\(endpoint) refused the connection: is sshd running and listening on port \(endpoint.port)?")
    case EHOSTUNREACH, ENETUNREACH, ETIMEDOUT, EHOSTDOWN:
      throw FleetError(
        .sshUnreachable, "\(endpoint) is unreachable (\(reason)): check the address and network")
    default:
      throw FleetError(.sshConnect, "cannot connect to \(endpoint): \(reason)")
    }
  }

  // MARK: - Waiting

  /// The last libssh2 error of this session: code and message.
  func lastError() -> (code: Int32, message: String) {
    var message: UnsafeMutablePointer<CChar>?
    var length: Int32 = 0
    let code = libssh2_session_last_error(raw, &message, &length, 0)
    return (code, message.map { String(cString: $0) } ?? "unknown error")
  }

  /// Whether a libssh2 error code means the transport itself is gone.
  static func isTransportError(_ rc: Int32) -> Bool {
    rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_SOCKET_RECV
      || rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_SOCKET_TIMEOUT
      || rc == LIBSSH2_ERROR_TIMEOUT || rc == LIBSSH2_ERROR_BANNER_RECV
      || rc == LIBSSH2_ERROR_BANNER_SEND || rc == LIBSSH2_ERROR_SOCKET_NONE
  }

  /// Turns a libssh2 failure into a ``FleetError``; transport failures mark the session broken and
  /// are ``FleetError/Code/sshUnreachable`` before login, ``FleetError/Code/sshConnectionLost`` after.
  func failure(_ rc: Int32, what: String, code: FleetError.Code) -> FleetError {
    let detail = lastError().message
    if Session.isTransportError(rc) {
      let error = FleetError(
        loggedIn ? .sshConnectionLost : .sshUnreachable,
        "connection to \(endpoint) was lost during \(what) (\(detail)): check the host and network, then retry"
      )
      brokenReason = error
      return error
    }
    if rc == LIBSSH2_ERROR_SFTP_PROTOCOL, let sftpHandle {
      let status = libssh2_sftp_last_error(sftpHandle)
      return FleetError(code, "\(what) on \(endpoint) failed: \(Session.sftpStatusText(status))")
    }
    return FleetError(code, "\(what) on \(endpoint) failed: \(detail) (libssh2 error \(rc))")
  }

  /// Fails fast if the transport already failed.
  func checkUsable() throws {
    if let brokenReason { throw brokenReason }
  }

  /// Calls `body` until it returns something other than `LIBSSH2_ERROR_EAGAIN`, waiting on the socket
  /// in between; a negative result becomes a ``FleetError`` with `code`.
  @discardableResult
  func retry(
    _ control: OperationControl, _ deadline: Deadline, what: @autoclosure () -> String, code: FleetError.Code,
    _ body: () -> Int32
  ) throws -> Int32 {
    while true {
      let rc = body()
      if rc == LIBSSH2_ERROR_EAGAIN {
        try wait(control, deadline, what: what())
        continue
      }
      if rc < 0 { throw failure(rc, what: what(), code: code) }
      return rc
    }
  }

  /// Like ``retry(_:_:what:code:_:)`` for calls that return a pointer (NULL + EAGAIN means "again").
  func retryPointer(
    _ control: OperationControl, _ deadline: Deadline, what: @autoclosure () -> String, code: FleetError.Code,
    _ body: () -> OpaquePointer?
  ) throws -> OpaquePointer {
    while true {
      if let p = body() { return p }
      let rc = libssh2_session_last_errno(raw)
      if rc == LIBSSH2_ERROR_EAGAIN {
        try wait(control, deadline, what: what())
        continue
      }
      throw failure(rc, what: what(), code: code)
    }
  }

  /// Waits until the socket is ready in the direction libssh2 is blocked on, the deadline passes
  /// (``FleetError/Code/sshTimeout``; before login ``FleetError/Code/sshUnreachable``) or the operation
  /// is cancelled (``FleetError/Code/cancelled``).
  ///
  /// Sends keepalives while idle. Never spins: `poll` sleeps until the socket, the cancel eventfd or
  /// a timeout (deadline or next keepalive) wakes it.
  func wait(_ control: OperationControl, _ deadline: Deadline, what: @autoclosure () -> String) throws {
    let directions = libssh2_session_block_directions(raw)
    var events: Int16 = 0
    if directions & LIBSSH2_SESSION_BLOCK_INBOUND != 0 { events |= Int16(POLLIN) }
    if directions & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events |= Int16(POLLOUT) }
    if events == 0 { events = Int16(POLLIN) }
    while true {
      if control.isCancelled { throw FleetError(.cancelled, "\(what()) on \(endpoint) was cancelled") }
      var timeout = deadline.remainingMilliseconds
      if timeout == 0 {
        throw FleetError(
          loggedIn ? .sshTimeout : .sshUnreachable,
          "\(what()) on \(endpoint) did not finish within \(deadline.limitText): the host or network may be "
            + "down or overloaded; retry or raise the timeout")
      }
      if keepaliveEnabled && directions & LIBSSH2_SESSION_BLOCK_OUTBOUND == 0 && socketWritable() {
        var next: Int32 = 0
        if libssh2_keepalive_send(raw, &next) == 0 {
          timeout = min(timeout, max(1, next) * 1000)
        }
      }
      if control.eventFD < 0 { timeout = min(timeout, 100) }
      // Acknowledge at once: sshd leaves Nagle on for non-interactive sessions, so a delayed ACK
      // here would hold its next small packet (channel replies, exit status) for 40 ms each time.
      var one: Int32 = 1
      _ = setsockopt(fd, Int32(IPPROTO_TCP), Int32(TCP_QUICKACK), &one, socklen_t(MemoryLayout<Int32>.size))
      var fds = [pollfd(fd: fd, events: events, revents: 0)]
      if control.eventFD >= 0 { fds.append(pollfd(fd: control.eventFD, events: Int16(POLLIN), revents: 0)) }
      let r = poll(&fds, nfds_t(fds.count), timeout)
      if r < 0 {
        if errno == EINTR { continue }
        throw FleetError(.internal, "poll failed: \(String(cString: strerror(errno)))")
      }
      if fds.count > 1 && fds[1].revents != 0 {
        throw FleetError(.cancelled, "\(what()) on \(endpoint) was cancelled")
      }
      if fds[0].revents != 0 { return }
    }
  }

  /// Whether the socket can take more data now (so a keepalive is never left half-sent).
  private func socketWritable() -> Bool {
    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
    return poll(&p, 1, 0) == 1 && p.revents & Int16(POLLOUT) != 0
  }

  // MARK: - SFTP

  /// The session's SFTP subsystem, started on first use.
  func sftp(_ control: OperationControl, _ deadline: Deadline) throws -> OpaquePointer {
    if let sftpHandle { return sftpHandle }
    let handle = try retryPointer(control, deadline, what: "starting SFTP", code: .sshSFTP) {
      libssh2_sftp_init(raw)
    }
    sftpHandle = handle
    return handle
  }

  /// Closes the session politely (best effort, bounded by a short deadline).
  func disconnect() {
    guard brokenReason == nil else { return }
    let control = OperationControl()
    let deadline = Deadline(after: .seconds(2))
    if let handle = sftpHandle {
      _ = try? retry(control, deadline, what: "closing SFTP", code: .sshSFTP) {
        libssh2_sftp_shutdown(handle)
      }
      sftpHandle = nil
    }
    _ = try? retry(control, deadline, what: "disconnect", code: .sshProtocol) {
      fleetsync_session_disconnect(raw, "fleetsync done")
    }
  }
}
