import FleetTestSupport
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
    var started: (port: Int, keeper: Int32)?
    for _ in 0..<20 where started == nil {
      started = try Self.startServer(directory: directory, hostKey: hostKey)
    }
    guard let started else { throw POSIXError(.EADDRINUSE) }
    keeperFD = started.keeper
    port = started.port
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

  /// Starts sshd on a free port under a keeper shell and waits until it listens; returns the port
  /// and the keeper's pipe, or nil when sshd exited first (the port was taken meanwhile).
  ///
  /// The keeper kills sshd when it reads a line (this attempt is abandoned) or, at EOF (this process
  /// exited), kills sshd and removes `directory`.
  private static func startServer(directory: String, hostKey: String) throws -> (port: Int, keeper: Int32)? {
    let port = LocalPorts.free()
    let pidFile = "\(directory)/sshd-\(port).pid"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = [
      "-c",
      "/usr/sbin/sshd -D -e -f /dev/null -p \(port) -o ListenAddress=127.0.0.1 -o HostKey=\(hostKey) "
        + "-o AuthorizedKeysFile=\(directory)/authorized_keys -o StrictModes=no "
        + "-o PidFile=\(pidFile) -o 'Subsystem sftp internal-sftp' -o MaxSessions=200 "
        + "-o MaxStartups=200:30:300 -o LogLevel=ERROR 2>>\(directory)/sshd.log & pid=$!; echo $pid; "
        + "if read _abandon; then kill $pid; else kill $pid; rm -rf \(directory); fi",
    ]
    let keeper = Pipe()
    let out = Pipe()
    p.standardInput = keeper
    p.standardOutput = out
    try p.run()
    var line: [UInt8] = []
    while line.last != UInt8(ascii: "\n"), let byte = out.fileHandleForReading.readData(ofLength: 1).first {
      line.append(byte)
    }
    guard
      let pid = Int32(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    else { throw POSIXError(.EIO, userInfo: ["keeper": "no sshd pid"]) }
    // sshd writes its pid file once it listens; if it cannot bind, it exits.
    try waitForBlocking("sshd on port \(port)") {
      !isRunning(pid) || FileManager.default.fileExists(atPath: pidFile)
    }
    if isRunning(pid) && LocalPorts.canConnect(port: port) {
      return (port, dup(keeper.fileHandleForWriting.fileDescriptor))
    }
    keeper.fileHandleForWriting.write(Data("abandon\n".utf8))
    return nil
  }

  /// Whether process `pid` exists and is not a zombie (an exited sshd stays one until the keeper
  /// shell reaps it).
  private static func isRunning(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return false }
    return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
  }
}
