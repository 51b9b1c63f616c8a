import Foundation
import Testing

/// A real OpenSSH server on 127.0.0.1 with throwaway keys, for tests that need no test fleet.
///
/// Started once per test process; a shell holding a pipe from this process kills sshd when the
/// process exits (the pipe closes), so no server outlives the tests.
final class LocalSSHD: Sendable {
  let directory: String
  let port: Int
  let hostKey: String
  let clientKey: String
  let ecdsaKey: String
  let ecdsaPassphrase = "correct horse"
  let rsaKey: String
  let wrongKey: String
  let knownHosts: String
  /// Write end of the pipe whose closing (at process exit) stops sshd.
  private let keeperFD: Int32

  /// Whether this machine can run the server (root, OpenSSH installed).
  static var isSupported: Bool {
    getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd")
      && FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen")
  }

  /// The shared server, started on first use.
  static let shared: LocalSSHD = {
    do { return try LocalSSHD() } catch { fatalError("cannot start the local sshd: \(error)") }
  }()

  private init() throws {
    var template = Array("/tmp/fleetsync-sshd-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
    directory = String(cString: made)
    hostKey = directory + "/host_ed25519"
    clientKey = directory + "/client_ed25519"
    ecdsaKey = directory + "/client_ecdsa"
    rsaKey = directory + "/client_rsa"
    wrongKey = directory + "/wrong_ed25519"
    knownHosts = directory + "/known_hosts"
    try Self.sh("ssh-keygen -q -t ed25519 -N '' -f \(hostKey)")
    try Self.sh("ssh-keygen -q -t ed25519 -N '' -f \(clientKey)")
    try Self.sh("ssh-keygen -q -t ecdsa -N '\(ecdsaPassphrase)' -f \(ecdsaKey)")
    try Self.sh("ssh-keygen -q -t rsa -b 2048 -N '' -f \(rsaKey)")
    try Self.sh("ssh-keygen -q -t ed25519 -N '' -f \(wrongKey)")
    // sshd reads authorized_keys as the user logging in: `nobody` (an unprivileged login) needs to reach it.
    try Self.sh(
      "cat \(clientKey).pub \(ecdsaKey).pub \(rsaKey).pub > \(directory)/authorized_keys; mkdir -p /run/sshd; "
        + "chmod 755 \(directory); chmod 644 \(directory)/authorized_keys")
    var chosen = 0
    var keeper: Int32 = -1
    for _ in 0..<20 {
      let candidate = Int.random(in: 20000...40000)
      let p = Process()
      p.executableURL = URL(fileURLWithPath: "/bin/sh")
      let script =
        "/usr/sbin/sshd -D -e -f /dev/null -p \(candidate) -o ListenAddress=127.0.0.1 -o HostKey=\(hostKey) "
        + "-o AuthorizedKeysFile=\(directory)/authorized_keys -o StrictModes=no "
        + "-o PidFile=\(directory)/sshd.pid -o 'Subsystem sftp internal-sftp' -o MaxSessions=200 "
        + "-o MaxStartups=200:30:300 -o LogLevel=ERROR 2>>\(directory)/sshd.log & pid=$!; "
        + "read _ignored; kill $pid; rm -rf \(directory)"
      p.arguments = ["-c", script]
      let pipe = Pipe()
      p.standardInput = pipe
      try p.run()
      if try Self.waitForPort(candidate) {
        chosen = candidate
        keeper = dup(pipe.fileHandleForWriting.fileDescriptor)
        break
      }
      pipe.fileHandleForWriting.closeFile()
    }
    guard chosen > 0 else { throw POSIXError(.EADDRINUSE) }
    keeperFD = keeper
    port = chosen
    let pub = try String(contentsOfFile: hostKey + ".pub", encoding: .utf8).split(separator: " ")
    try "[127.0.0.1]:\(port) \(pub[0]) \(pub[1])\n".write(
      toFile: knownHosts, atomically: true, encoding: .utf8)
  }

  /// Runs a local shell command and returns stdout; throws when it fails.
  @discardableResult
  static func sh(_ command: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
      throw POSIXError(.EIO, userInfo: ["command": command])
    }
    return String(decoding: data, as: UTF8.self)
  }

  private static func waitForPort(_ port: Int) throws -> Bool {
    for _ in 0..<50 {
      usleep(100_000)
      let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      var addr = sockaddr_in()
      addr.sin_family = sa_family_t(AF_INET)
      addr.sin_port = in_port_t(UInt16(port).bigEndian)
      addr.sin_addr.s_addr = inet_addr("127.0.0.1")
      let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
      }
      close(fd)
      if rc == 0 { return true }
    }
    return false
  }
}
