import FleetTestSupport
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Helpers for the agent's integration tests: the built `fleetsync-watch` binary, a real rsync daemon
/// on 127.0.0.1, an HTTP client for the health endpoint. Namespaced so they cannot collide with the
/// engine tests' helpers in the same module.
enum AgentIT {
  struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
  }

  /// Whether the tools these tests need exist.
  static let canRun =
    FileManager.default.isExecutableFile(atPath: "/usr/bin/rsync") && binary != nil

  /// The built `fleetsync-watch`, next to the test bundle or in the package's `.build/debug`.
  static let binary: String? = {
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().path
    var candidates = [
      Bundle.main.bundleURL.appendingPathComponent("fleetsync-watch").path,
      Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("fleetsync-watch").path,
    ]
    let argv0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    candidates.append(argv0.deletingLastPathComponent().appendingPathComponent("fleetsync-watch").path)
    if let executable = Bundle.main.executableURL {
      candidates.append(executable.deletingLastPathComponent().appendingPathComponent("fleetsync-watch").path)
    }
    candidates.append(packageRoot + "/.build/debug/fleetsync-watch")
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
  }()

  /// A fresh directory under the system temp dir, removed by ``remove()``.
  struct Scratch {
    let path: String

    init(_ name: String) throws {
      let base = URL(fileURLWithPath: NSTemporaryDirectory())
      path =
        base.appendingPathComponent("fleetsync-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func dir(_ name: String) throws -> String {
      let sub = path + "/" + name
      try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
      return sub
    }

    func file(_ name: String, _ text: String, mode: mode_t = 0o644) throws -> String {
      let file = path + "/" + name
      try text.write(toFile: file, atomically: true, encoding: .utf8)
      chmod(file, mode)
      return file
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
  }

  /// A running `fleetsync-watch`, its stderr captured in a file.
  final class Agent {
    let process = Process()
    let stderrPath: String

    init(_ arguments: [String], scratch: Scratch, environment: [String: String] = [:]) throws {
      stderrPath = scratch.path + "/agent-\(UInt32.random(in: 0...UInt32.max)).stderr"
      _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
      process.executableURL = URL(fileURLWithPath: AgentIT.binary!)
      process.arguments = ["run"] + arguments
      var env = ProcessInfo.processInfo.environment
      env["RSYNC_PASSWORD"] = nil
      env["NOTIFY_SOCKET"] = nil
      for (key, value) in environment { env[key] = value }
      process.environment = env
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle(forWritingAtPath: stderrPath)
      try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    func signal(_ number: Int32) { kill(pid, number) }

    /// Waits for the exit, up to a generous bound; kills the process and fails if it does not come.
    func waitForExit() async throws -> Int32 {
      let exited = try await eventually(every: .milliseconds(50)) { !process.isRunning }
      if !exited {
        let threads = AgentIT.threadDump(pid: pid)
        kill(pid, SIGKILL)
        process.waitUntilExit()
        throw Failure(
          "fleetsync-watch did not exit within \(Wait.deadline); stderr:\n\(stderr)\nthreads:\n\(threads)")
      }
      return process.terminationStatus
    }

    /// Stops it with SIGTERM and returns the exit status.
    func stop() async throws -> Int32 {
      guard process.isRunning else { return process.terminationStatus }
      signal(SIGTERM)
      return try await waitForExit()
    }

    /// Kills it and the rsync processes it started, as a crash of the whole service would.
    func crash() {
      AgentIT.crash(pid: pid)
      process.waitUntilExit()
    }
  }

  /// Runs `fleetsync-watch run ARGS` to completion (for start-up failures) and returns status and stderr.
  static func runToExit(_ arguments: [String], scratch: Scratch) async throws -> (
    status: Int32, stderr: String
  ) {
    let agent = try Agent(arguments, scratch: scratch)
    let status = try await agent.waitForExit()
    return (status, agent.stderr)
  }

  /// Runs `fleetsync-watch resume --config CONFIG ARGS` to completion: exit status and output.
  static func resume(config: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let run = try CLI.runProcess(AgentIT.binary!, ["resume", "--config", config] + arguments)
    return (run.status, run.stdout + run.stderr)
  }

  /// `GET path` on the health endpoint: status code and body.
  static func get(_ path: String, port: Int) throws -> (status: Int, body: String) {
    let response = try HTTPTestClient.request("GET", path, port: port)
    return (response.status, response.body)
  }

  /// `GET /status` decoded as a JSON object.
  static func status(port: Int) throws -> [String: Any] {
    let response = try get("/status", port: port)
    guard let object = try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]
    else {
      throw Failure("/status is not a JSON object: \(response.body)")
    }
    return object
  }

  /// Every process's command line that contains `needle` (as /proc/*/cmdline shows them).
  static func commandLinesContaining(_ needle: String) -> [String] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var found: [String] = []
    for entry in entries where Int32(entry) != nil {
      guard let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
      let line = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
      if line.contains(needle) { found.append("\(entry): \(line)") }
    }
    return found
  }

  /// What every thread of `pid` is doing, for a test that found it stuck: each thread's kernel state and
  /// wait channel, and the user-space stacks when gdb is installed.
  static func threadDump(pid: Int32) -> String {
    var lines: [String] = []
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    for task in tasks.sorted() {
      let base = "/proc/\(pid)/task/\(task)"
      let name = (try? String(contentsOfFile: base + "/comm", encoding: .utf8)) ?? "?"
      let wchan = (try? String(contentsOfFile: base + "/wchan", encoding: .utf8)) ?? "?"
      let stat = (try? String(contentsOfFile: base + "/stat", encoding: .utf8)) ?? ""
      let state = stat.split(separator: ")").last?.split(separator: " ").first ?? "?"
      lines.append("\(task) \(name.trimmingCharacters(in: .newlines)) state \(state) wchan \(wchan)")
    }
    let gdb = "/usr/bin/gdb"
    guard FileManager.default.isExecutableFile(atPath: gdb) else { return lines.joined(separator: "\n") }
    let output = Pipe()
    let run = Process()
    run.executableURL = URL(fileURLWithPath: gdb)
    run.arguments = ["-p", "\(pid)", "-batch", "-ex", "thread apply all bt 30"]
    run.standardOutput = output
    run.standardError = output
    guard (try? run.run()) != nil else { return lines.joined(separator: "\n") }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    run.waitUntilExit()
    let stacks = String(decoding: data, as: UTF8.self).split(separator: "\n").filter {
      $0.hasPrefix("#") || $0.hasPrefix("Thread ")
    }
    return (lines + stacks.map(String.init)).joined(separator: "\n")
  }

  /// Kills process `pid` and its children (SIGKILL) without waiting for them; see ``Agent/crash()``.
  static func crash(pid: Int32) {
    let children = children(of: pid)
    kill(pid, SIGKILL)
    for child in children { kill(child, SIGKILL) }
  }

  /// Processes whose parent is `pid`.
  static func children(of pid: Int32) -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap { entry -> Int32? in
      guard let child = Int32(entry),
        let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
      else { return nil }
      let fields = stat[stat.index(after: close)...].split(separator: " ")
      return fields.count > 1 && Int32(fields[1]) == pid ? child : nil
    }
  }

}

extension RsyncDaemon {
  /// A password file (mode 600) holding the right password, or `wrong` if given.
  func passwordFile(in scratch: AgentIT.Scratch, wrong: String? = nil) throws -> String {
    try scratch.file(
      "password-\(UInt32.random(in: 0...UInt32.max))", (wrong ?? password) + "\n", mode: 0o600)
  }
}
