import ArgumentParser
import FleetCore
import FleetSSH
import Foundation

/// Host selection and SSH settings shared by `exec` and `push`.
struct HostOptions: ParsableArguments {
  @Option(
    name: .customLong("hosts"), help: "File with one [USER@]HOST[:PORT] per line ('#' starts a comment).")
  var hostsFile: String?

  @Option(name: .customLong("host"), help: "A host as [USER@]HOST[:PORT]; repeatable.")
  var host: [String] = []

  @Option(
    help: """
      Private key (ed25519 or ECDSA). Default: the ssh-agent if SSH_AUTH_SOCK is set, else ~/.ssh/id_ed25519 \
      or ~/.ssh/id_ecdsa. A passphrase is read from FLEETSYNC_KEY_PASSPHRASE (never from arguments).
      """)
  var identity: String?

  @Option(name: .customLong("known-hosts"), help: "OpenSSH known_hosts file to check host keys against.")
  var knownHosts: String = "~/.ssh/known_hosts"

  @Flag(name: .customLong("accept-new"), help: "Record unknown hosts' keys (changed keys are still refused).")
  var acceptNew = false

  @Option(help: "How many hosts to work on at once.")
  var forks: Int = 32

  @Option(help: "Seconds each host's command or upload may take.")
  var timeout: Double = 300

  @Option(name: .customLong("connect-timeout"), help: "Seconds to connect and log in to each host.")
  var connectTimeout: Double = 10

  func validate() throws {
    guard hostsFile != nil || !host.isEmpty else {
      throw ValidationError("give --hosts FILE or --host USER@ADDR")
    }
    guard (1...1024).contains(forks) else { throw ValidationError("--forks must be between 1 and 1024") }
    guard timeout > 0, connectTimeout > 0 else { throw ValidationError("timeouts must be positive") }
  }

  /// The endpoints named by `--host` and `--hosts`, in order, without duplicates.
  func endpoints() throws -> [SSHEndpoint] {
    var texts = host
    if let hostsFile {
      let content: String
      do { content = try String(contentsOfFile: expand(hostsFile), encoding: .utf8) } catch {
        throw FleetError(
          .invalidInput, "cannot read the hosts file \(hostsFile): \(error.localizedDescription)")
      }
      for line in content.split(whereSeparator: \.isNewline) {
        let text = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
          .trimmingCharacters(in: .whitespaces)
        if !text.isEmpty { texts.append(text) }
      }
    }
    var seen = Set<SSHEndpoint>()
    return try texts.map { try SSHEndpoint(parsing: $0) }.filter { seen.insert($0).inserted }
  }

  /// SSH options from the flags and the environment.
  func sshOptions() throws -> SSHOptions {
    let identity: SSHIdentity
    let passphrase = ProcessInfo.processInfo.environment["FLEETSYNC_KEY_PASSPHRASE"].map { Secret($0) }
    if let path = self.identity {
      identity = .keyFile(path: expand(path), passphrase: passphrase)
    } else if let sock = ProcessInfo.processInfo.environment["SSH_AUTH_SOCK"], !sock.isEmpty {
      identity = .agent
    } else {
      let candidates = ["~/.ssh/id_ed25519", "~/.ssh/id_ecdsa"].map(expand)
      guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
        throw FleetError(
          .invalidInput, "no identity: give --identity KEY, start an ssh-agent, or create ~/.ssh/id_ed25519")
      }
      identity = .keyFile(path: found, passphrase: passphrase)
    }
    return SSHOptions(
      identity: identity, knownHostsFile: expand(knownHosts), hostKeyPolicy: acceptNew ? .acceptNew : .strict,
      connectTimeout: .milliseconds(Int(connectTimeout * 1000)),
      operationTimeout: .milliseconds(Int(timeout * 1000)))
  }

  private func expand(_ path: String) -> String {
    path.hasPrefix("~/") ? NSHomeDirectory() + path.dropFirst() : path
  }
}

struct ExecCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "exec",
    abstract: "Run a shell command on many hosts in parallel.",
    discussion: """
      Prints each host's output under a header line, then a recap. A host counts as failed when the \
      command exits non-zero, runs past --timeout or loses its connection; as auth when the login or \
      the host key is refused; as unreachable when no SSH session came about (nothing ran there).

      """ + ExitStatus.helpText)

  @OptionGroup var hosts: HostOptions

  @Argument(parsing: .captureForPassthrough, help: "The command (after --), run by each host's login shell.")
  var command: [String] = []

  func run() async throws {
    let words = command.first == "--" ? Array(command.dropFirst()) : command
    guard !words.isEmpty else { throw ValidationError("give the command after --") }
    let commandLine = words.joined(separator: " ")
    try await reportingFailures {
      let endpoints = try hosts.endpoints()
      let options = try hosts.sshOptions()
      let results = await SSHClient.withClient(threads: min(max(hosts.forks, 1), 256)) { client in
        await client.fanOut(endpoints, options: options, window: hosts.forks) { connection in
          try await connection.exec(commandLine)
        }
      }
      let outcomes = results.map { endpoint, result -> HostOutcome in
        switch result {
        case .success(let output):
          let status = output.exitSignal.map { "signal \($0)" } ?? "exit \(output.exitStatus)"
          say("==> \(endpoint) (\(status))")
          FileHandle.standardOutput.write(Data(output.stdout))
          if !output.stdout.isEmpty && output.stdout.last != UInt8(ascii: "\n") { say("") }
          FileHandle.standardError.write(Data(output.stderr))
          return output.succeeded ? .ok : .failed(status)
        case .failure(let error):
          return reportHostError(endpoint, error)
        }
      }
      say(HostRecap.line(outcomes))
      try ExitStatus(outcomes).throwIfNotOK()
    }
  }
}

struct PushCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "push",
    abstract: "Upload a file to many hosts atomically (temp file, fsync, rename).",
    discussion: """
      Hosts count as for exec; an upload that the host refuses (permission denied, no space left) is \
      failed.

      """ + ExitStatus.helpText)

  @OptionGroup var hosts: HostOptions

  @Argument(help: "The local file.") var localFile: String
  @Argument(help: "The path on each host.") var remotePath: String

  @Option(help: "File mode, octal.") var mode: String = "0644"
  @Option(help: "Owner to set (needs root on the host).") var owner: String?
  @Option(help: "Group to set (needs root on the host).") var group: String?

  func run() async throws {
    guard let modeValue = Int(mode, radix: 8), (0...0o7777).contains(modeValue) else {
      throw ValidationError("--mode must be octal, e.g. 0644")
    }
    guard FileManager.default.isReadableFile(atPath: localFile) else {
      throw ValidationError("cannot read \(localFile)")
    }
    try await reportingFailures {
      let endpoints = try hosts.endpoints()
      let options = try hosts.sshOptions()
      let (local, remote, owner, group) = (localFile, remotePath, owner, group)
      let results = await SSHClient.withClient(threads: min(max(hosts.forks, 1), 256)) { client in
        await client.fanOut(endpoints, options: options, window: hosts.forks) { connection in
          try await connection.uploadFile(
            localPath: local, to: remote, mode: modeValue, owner: owner, group: group)
        }
      }
      let outcomes = results.map { endpoint, result -> HostOutcome in
        switch result {
        case .success:
          say("==> \(endpoint) ok")
          return .ok
        case .failure(let error):
          return reportHostError(endpoint, error)
        }
      }
      say(HostRecap.line(outcomes))
      try ExitStatus(outcomes).throwIfNotOK()
    }
  }
}

/// Prints a host's error under its header line and returns its outcome.
func reportHostError(_ endpoint: SSHEndpoint, _ error: FleetError) -> HostOutcome {
  let outcome = HostOutcome(error)
  say("==> \(endpoint) (\(outcome.word): \(error.code))")
  FileHandle.standardError.write(Data("fleetsync: \(error.message)\n".utf8))
  return outcome
}

/// Writes a line to stdout unbuffered, so it stays in order with raw output written the same way.
func say(_ line: String) {
  FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
