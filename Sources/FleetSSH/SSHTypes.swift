import FleetCore

#if canImport(Glibc)
  import Glibc
#endif

/// Where to log in: a user on a host and port.
public struct SSHEndpoint: Sendable, Hashable, CustomStringConvertible {
  /// Host name or IP address.
  public var host: String
  /// TCP port of the SSH server.
  public var port: Int
  /// Remote user name.
  public var user: String

  /// Makes an endpoint; `port` defaults to 22 and `user` to `root`.
  public init(host: String, port: Int = 22, user: String = "root") {
    self.host = host
    self.port = port
    self.user = user
  }

  /// Parses `[USER@]HOST[:PORT]` (IPv6 literals as `[ADDR]:PORT`).
  ///
  /// - Throws: ``FleetError`` with code ``FleetError/Code/invalidInput`` when the text is not of that form.
  public init(parsing text: String, defaultUser: String = "root", defaultPort: Int = 22) throws {
    var rest = text.drop(while: { $0 == " " || $0 == "\t" })
    while let last = rest.last, last == " " || last == "\t" { rest = rest.dropLast() }
    var user = defaultUser
    if let at = rest.lastIndex(of: "@") {
      user = String(rest[..<at])
      rest = rest[rest.index(after: at)...]
    }
    var host = String(rest)
    var port = defaultPort
    if rest.hasPrefix("[") {
      guard let close = rest.firstIndex(of: "]") else {
        throw FleetError(.invalidInput, "bad host '\(text)': missing ']' (use [ADDR]:PORT)")
      }
      host = String(rest[rest.index(after: rest.startIndex)..<close])
      let after = rest[rest.index(after: close)...]
      if after.hasPrefix(":") {
        guard let p = Int(after.dropFirst()) else {
          throw FleetError(.invalidInput, "bad port in '\(text)'")
        }
        port = p
      } else if !after.isEmpty {
        throw FleetError(.invalidInput, "bad host '\(text)': expected [ADDR]:PORT")
      }
    } else if let colon = rest.lastIndex(of: ":"), rest.firstIndex(of: ":") == colon {
      host = String(rest[..<colon])
      guard let p = Int(rest[rest.index(after: colon)...]) else {
        throw FleetError(.invalidInput, "bad port in '\(text)'")
      }
      port = p
    }
    guard !host.isEmpty, !user.isEmpty, (1...65535).contains(port) else {
      throw FleetError(.invalidInput, "bad host '\(text)': expected [USER@]HOST[:PORT]")
    }
    self.init(host: host, port: port, user: user)
  }

  /// `user@host:port`, the form error messages use.
  public var description: String {
    host.contains(":") ? "\(user)@[\(host)]:\(port)" : "\(user)@\(host):\(port)"
  }

  /// The host as `known_hosts` names it: `host` on port 22, `[host]:port` otherwise.
  public var knownHostsName: String { port == 22 ? host : "[\(host)]:\(port)" }
}

/// What to do with a server whose host key is not in `known_hosts`, like OpenSSH's `StrictHostKeyChecking`.
///
/// A key that differs from a recorded one is refused under every policy.
public enum HostKeyPolicy: String, Sendable, CaseIterable {
  /// Refuse unknown hosts (the default).
  case strict
  /// Record unknown hosts' keys in `known_hosts` (appending a line) and go on.
  case acceptNew = "accept-new"
}

/// How to authenticate.
public enum SSHIdentity: Sendable {
  /// An ed25519 or ECDSA private key file (OpenSSH or PEM format), with an optional passphrase.
  ///
  /// RSA keys cannot log in to OpenSSH >= 8.8 with libssh2 1.10 (no rsa-sha2 signatures).
  case keyFile(path: String, passphrase: Secret?)
  /// The keys of the ssh-agent at `SSH_AUTH_SOCK`.
  case agent
}

/// Settings of a connection.
public struct SSHOptions: Sendable {
  /// How to log in.
  public var identity: SSHIdentity
  /// The OpenSSH `known_hosts` file checked (and, under `accept-new`, appended to).
  public var knownHostsFile: String
  /// What to do with unknown hosts.
  public var hostKeyPolicy: HostKeyPolicy
  /// Deadline for TCP connect, SSH handshake and authentication together.
  public var connectTimeout: Duration
  /// Default deadline of each operation (exec, upload, read) when the call gives none.
  public var operationTimeout: Duration
  /// Interval of SSH keepalive messages while waiting; zero turns them off.
  public var keepaliveInterval: Duration

  /// Makes options; the defaults suit a LAN fleet.
  public init(
    identity: SSHIdentity,
    knownHostsFile: String,
    hostKeyPolicy: HostKeyPolicy = .strict,
    connectTimeout: Duration = .seconds(10),
    operationTimeout: Duration = .seconds(300),
    keepaliveInterval: Duration = .seconds(15)
  ) {
    self.identity = identity
    self.knownHostsFile = knownHostsFile
    self.hostKeyPolicy = hostKeyPolicy
    self.connectTimeout = connectTimeout
    self.operationTimeout = operationTimeout
    self.keepaliveInterval = keepaliveInterval
  }
}

/// What a remote command produced.
public struct ExecResult: Sendable, Equatable {
  /// Everything the command wrote to standard output.
  public var stdout: [UInt8]
  /// Everything the command wrote to standard error.
  public var stderr: [UInt8]
  /// The exit status as the remote shell reports it (128+N when the command died of signal N).
  public var exitStatus: Int32
  /// The signal name (e.g. `KILL`) when the remote session itself was killed by a signal.
  public var exitSignal: String?

  /// Makes a result.
  public init(stdout: [UInt8], stderr: [UInt8], exitStatus: Int32, exitSignal: String?) {
    self.stdout = stdout
    self.stderr = stderr
    self.exitStatus = exitStatus
    self.exitSignal = exitSignal
  }

  /// Standard output decoded as UTF-8 (invalid bytes replaced).
  public var stdoutString: String { String(decoding: stdout, as: UTF8.self) }
  /// Standard error decoded as UTF-8 (invalid bytes replaced).
  public var stderrString: String { String(decoding: stderr, as: UTF8.self) }
  /// Whether the command exited with status 0 and no signal.
  public var succeeded: Bool { exitStatus == 0 && exitSignal == nil }

  /// Signal numbers by the names SSH reports them with (RFC 4254 §6.10, without the `SIG` prefix).
  static let signalNumbers: [String: Int32] = [
    "ABRT": SIGABRT, "ALRM": SIGALRM, "FPE": SIGFPE, "HUP": SIGHUP, "ILL": SIGILL, "INT": SIGINT,
    "KILL": SIGKILL, "PIPE": SIGPIPE, "QUIT": SIGQUIT, "SEGV": SIGSEGV, "TERM": SIGTERM, "USR1": SIGUSR1,
    "USR2": SIGUSR2,
  ]
}

extension FleetError.Code {
  /// The TCP connection was refused or failed (no sshd on that port?).
  public static let sshConnect = FleetError.Code("ssh.connect", meaning: .unreachable)
  /// The host could not be reached: no route, no answer before the connect deadline, or the connection
  /// failed or timed out during the SSH handshake or login.
  public static let sshUnreachable = FleetError.Code("ssh.unreachable", meaning: .unreachable)
  /// An operation on a logged-in connection ran past its deadline (the remote command is killed).
  public static let sshTimeout = FleetError.Code("ssh.timeout", meaning: .failed)
  /// The host is not in `known_hosts` and the policy is `strict`.
  public static let sshHostKeyUnknown = FleetError.Code("ssh.hostKeyUnknown", meaning: .auth)
  /// The host's key differs from the one recorded in `known_hosts` (of any key type).
  public static let sshHostKeyChanged = FleetError.Code("ssh.hostKeyChanged", meaning: .auth)
  /// The host offered a key that an `@revoked` line of `known_hosts` revokes.
  public static let sshHostKeyRevoked = FleetError.Code("ssh.hostKeyRevoked", meaning: .auth)
  /// The server refused the credentials, or they could not be loaded.
  public static let sshAuth = FleetError.Code("ssh.auth", meaning: .auth)
  /// The server refused an RSA key: libssh2 1.10 cannot sign with rsa-sha2 for OpenSSH >= 8.8.
  public static let sshAuthRSA = FleetError.Code("ssh.authRSA", meaning: .auth)
  /// The SSH handshake failed: no common algorithms, a bad packet, or no usable host key offered.
  public static let sshProtocol = FleetError.Code("ssh.protocol", meaning: .unreachable)
  /// A channel (exec session) could not be opened or failed.
  public static let sshChannel = FleetError.Code("ssh.channel", meaning: .failed)
  /// An SFTP operation failed (permission denied, no space left, no such directory, ...).
  public static let sshSFTP = FleetError.Code("ssh.sftp", meaning: .failed)
  /// A logged-in connection dropped before the operation finished; it may have partly happened.
  public static let sshConnectionLost = FleetError.Code("ssh.connectionLost", meaning: .failed)
}
