import FleetCore
import Foundation
import Logging
import Subprocess

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

#if canImport(System)
  import System
#else
  import SystemPackage
#endif

/// How one rsync run ended, by what it means for the engine.
enum TransferOutcome: Equatable {
  /// Everything listed arrived.
  case ok(files: UInt64, bytes: UInt64)
  /// Exit 24: some files vanished under live writes; re-queue and carry on.
  case partial(code: Int32, message: String)
  /// Exit 23: some paths did not arrive; `errors` say which, as far as rsync told (see
  /// ``RsyncPathError``). Not a success: the dispatcher retries those paths on their own.
  case incomplete(errors: [RsyncPathError], message: String)
  /// The transfer failed.
  case failed(kind: WatchStatus.ErrorKind, message: String)

  var errorKind: WatchStatus.ErrorKind? {
    switch self {
    case .ok: nil
    case .partial, .incomplete: .partial
    case .failed(let kind, _): kind
    }
  }

  var message: String? {
    switch self {
    case .ok: nil
    case .partial(_, let m), .incomplete(_, let m), .failed(_, let m): m
    }
  }
}

/// Builds rsync command lines and classifies how they ended.
struct RsyncCommand: Sendable {
  var config: WatchConfig
  /// The sandbox every run is confined to (``SenderSandbox``); nil runs rsync unconfined.
  var sandbox: SenderSandbox? = nil
  /// Where paths sent otherwise than listed (``PathConfinement``) and refused reads are logged.
  var logger: Logger? = nil
  /// The delete limit's gate; nil when the limit is off (see `Rsync+DeleteLimit.swift`).
  var deletes: DeleteGate? = nil
  /// rsync `--max-delete` for this command's runs, when set.
  var maxDelete: Int? = nil
  /// The mass-change alarm every run's deletes and overwrites are reported to; nil when it is off.
  var changes: MassChangeGate? = nil
  /// The CPU and I/O priority of this command's runs: ``ProcessPriority/background`` for a full sync.
  var priority = ProcessPriority.normal
  /// Whether listed paths are sent whatever their size and mtime (`--ignore-times`): they changed.
  /// Off for a recheck (``Transfer/Work/recheck(_:)``), which sends only what differs.
  var ignoreTimes = true
  /// The precision full syncs (``fullArguments``) compare mtimes at; see ``TimestampProbe``. Listed
  /// paths are sent with `--ignore-times` and always set times to the nanosecond.
  var fullSyncPrecision = TimestampPrecision.nanosecond

  /// Options both transfer kinds share.
  ///
  /// `--sockopts=TCP_NODELAY`: without it, Nagle's algorithm and delayed ACKs add about 40 ms at
  /// two points of every daemon session (90 ms per rsync run on loopback, measured).
  ///
  /// `-aAXHS --numeric-ids`: the metadata a restore must give back: owner and group by number,
  /// mode, times, ACLs (`-A`), extended attributes (`-X`), hard links (`-H`), holes (`-S`). `-H`
  /// links only what one run sends: a batch that lists one name of a link set sends it as a file
  /// of its own, and the next full sync (which lists every name) links the set again on the
  /// backup. `-S` writes runs of zeros as holes: a file that was not sparse comes back sparse.
  /// `--modify-window=-1` compares mtimes to the nanosecond, so a directory or symlink whose time
  /// changed within the second the backup's copy was made gets its time too.
  var commonArguments: [String] { commonArguments(comparingTimes: .nanosecond) }

  /// ``commonArguments`` with mtimes compared at `precision` (only full syncs compare coarser).
  func commonArguments(comparingTimes precision: TimestampPrecision) -> [String] {
    var args = [
      "-aAXHS",
      "--numeric-ids",
      precision.modifyWindowArgument,
      "--force",
      "--sockopts=TCP_NODELAY",
      "--timeout=\(Self.seconds(config.ioTimeout))",
      "--contimeout=\(Self.seconds(config.connectTimeout))",
      "--stats",
      "--no-human-readable",
    ]
    if let pw = config.passwordFile { args.append("--password-file=\(pw)") }
    if let maxDelete { args.append("--max-delete=\(maxDelete)") }
    args += versionArguments()
    for e in config.excludes { args.append("--exclude=\(e)") }
    return args
  }

  /// Arguments for sending the NUL-separated path list in `listFile`.
  ///
  /// `--ignore-times`: a listed file did change, even when its size and mtime match the backup's
  /// (a same-size rewrite within one second, or one clock tick); rsync's delta transfer still
  /// sends only what differs.
  func listArguments(_ listFile: String) -> [String] {
    commonArguments + (ignoreTimes ? ["--ignore-times"] : [])
      + ["--files-from=\(listFile)", "--from0", "--delete-missing-args"]
      + endpoints
  }

  /// Arguments for a reconciling full sync of the whole tree, mtimes compared at
  /// ``fullSyncPrecision`` (to the nanosecond unless the backup keeps no sub-second times).
  var fullArguments: [String] {
    commonArguments(comparingTimes: fullSyncPrecision) + ["--delete"] + endpoints
  }

  var endpoints: [String] {
    let src = config.source.hasSuffix("/") ? config.source : config.source + "/"
    return [src, config.target.destinationArgument]
  }

  static func seconds(_ d: Duration) -> Int {
    max(1, Int(d.components.seconds) + (d.components.attoseconds > 0 ? 1 : 0))
  }

  /// Arguments for sending directory trees (listed in `listFile`) recursively, deleting extraneous files.
  func treeArguments(_ listFile: String) -> [String] {
    commonArguments + ["-r", "--delete"] + (ignoreTimes ? ["--ignore-times"] : [])
      + ["--files-from=\(listFile)", "--from0", "--delete-missing-args"] + endpoints
  }

  /// Arguments for sending the source root's own mode, owner and times, and nothing inside it.
  ///
  /// Not `.` in a path list: rsync sends the immediate content of a listed `.` as well.
  var rootArguments: [String] {
    commonArguments + ["--exclude=/*"] + endpoints
  }

  /// Sends `paths`: trees recursively first, then the entries, then the root's attributes.
  ///
  /// No path goes through a symlink or a file (``PathConfinement``): such a path is sent as that
  /// symlink or file.
  func send(_ paths: [SyncPath]) async -> TransferOutcome {
    let plan = TransferPlan(PathConfinement(source: config.source).check(paths, logger: logger))
    var runs: [@Sendable () async -> TransferOutcome] = []
    if !plan.trees.isEmpty { runs.append { await runLimitingDeletes(plan.trees, .trees) } }
    if !plan.entries.isEmpty { runs.append { await runLimitingDeletes(plan.entries, .entries) } }
    if plan.root { runs.append { await run(arguments: rootArguments) } }
    var files: UInt64 = 0
    var bytes: UInt64 = 0
    var partial: TransferOutcome?
    var incomplete: [RsyncPathError] = []
    var message = ""
    for run in runs {
      let outcome = await run()
      switch outcome {
      case .ok(let f, let b):
        files += f
        bytes += b
      case .partial: partial = outcome
      case .incomplete(let errors, let m):
        incomplete += errors
        message = m
      case .failed: return outcome
      }
    }
    if !incomplete.isEmpty {
      // A vanished file beside them is one more path the errors do not name.
      let vanished = partial.map { [RsyncPathError(location: .unknown, line: $0.message ?? "")] } ?? []
      return .incomplete(errors: incomplete + vanished, message: message)
    }
    return partial ?? .ok(files: files, bytes: bytes)
  }

  /// Sends `paths` where the backup's copy differs from the source's in size or mtime (no
  /// `--ignore-times`): a recheck after a full sync (see ``Transfer/Work/recheck(_:)``).
  func recheck(_ paths: [SyncPath]) async -> TransferOutcome {
    var differing = self
    differing.ignoreTimes = false
    return await differing.send(paths)
  }

  /// Runs a reconciling full sync of the whole tree, in the background (see ``ProcessPriority``).
  func fullSync() async -> TransferOutcome {
    var background = self
    background.priority = .background
    return await background.fullSyncLimitingDeletes()
  }

  /// Runs rsync with `arguments`, which get the path of a file holding `list` (see
  /// ``TransferPlan/filesFrom(_:)``; a file, not stdin: rsync may exit before reading a pipe).
  func run(list: [RelativePath], arguments: (String) -> [String]) async -> TransferOutcome {
    await withListFile(list) { await run(arguments: arguments($0)) }
  }

  /// Writes `list` to a scratch file in the state directory, runs `body` with its path, removes it.
  func withListFile(_ list: [RelativePath], _ body: (String) async -> TransferOutcome) async
    -> TransferOutcome
  {
    let file = "\(config.stateDir)/batch.\(UInt64.random(in: 0...UInt64.max)).list"
    guard Self.writeScratch(TransferPlan.filesFrom(list), to: file) else {
      return .failed(
        kind: .io,
        message: "cannot write the transfer list in \(config.stateDir): \(String(cString: strerror(errno)))")
    }
    defer { unlink(file) }
    return await body(file)
  }

  /// Writes a short-lived file (no fsync: it only has to outlive one rsync run).
  static func writeScratch(_ data: [UInt8], to path: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var offset = 0
    while offset < data.count {
      let n = data[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else { return false }
      offset += n
    }
    return true
  }

  /// The most bytes of each of rsync's output streams kept (the tail): enough for the `--stats`
  /// summary and the last error lines, however much rsync prints before them.
  static let outputTailBytes = 256 << 10

  /// Runs rsync with `arguments` and classifies the result by its exit status.
  ///
  /// Both output streams are read to the end and only their tails kept, so a run that prints a lot
  /// is still classified by how it ended; "cannot run rsync" means it could not be started.
  func run(arguments: [String]) async -> TransferOutcome {
    switch await execute(arguments: arguments) {
    case .exited(let code, let out, let err, let complete):
      changes?.note(out)
      return Self.classify(
        exitCode: code, stdout: out, stderr: err, target: config.target, source: config.source,
        stderrComplete: complete)
    case .ended(let outcome): return outcome
    }
  }

  /// How an rsync process ended: its exit status and output tails (`stderrComplete`: nothing of
  /// stderr was dropped), or an outcome without one.
  enum Execution {
    case exited(code: Int32, stdout: String, stderr: String, stderrComplete: Bool)
    case ended(TransferOutcome)
  }

  /// The files an rsync command line reads besides the source and the password file: its path
  /// list (`--files-from`). With a ``sandbox``, these are what rsync may read beside the source.
  static func filesRead(by arguments: [String]) -> [String] {
    let option = "--files-from="
    return arguments.filter { $0.hasPrefix(option) }.map { String($0.dropFirst(option.count)) }
  }

  /// Runs rsync with `arguments` to its end, in the ``sandbox`` when there is one.
  func execute(arguments: [String]) async -> Execution {
    if let sandbox {
      return await executeConfined(arguments, reading: Self.filesRead(by: arguments), in: sandbox)
    }
    if priority == .background { return await executeUnconfined(arguments) }
    let executable: Executable =
      config.rsyncPath.contains("/") ? .path(FilePath(config.rsyncPath)) : .name(config.rsyncPath)
    do {
      let result = try await Subprocess.run(
        executable, arguments: Arguments(arguments), input: .none, output: .sequence, error: .sequence
      ) { execution in
        async let out = OutputTail.collect(execution.standardOutput, capacity: Self.outputTailBytes)
        async let err = OutputTail.collect(execution.standardError, capacity: Self.outputTailBytes)
        return try await (out.text, err)
      }
      let (out, err) = result.closureResult
      switch result.terminationStatus {
      case .exited(let code):
        return .exited(code: code, stdout: out, stderr: err.text, stderrComplete: err.dropped == 0)
      case .signaled(let signal):
        return .ended(.failed(kind: .rsync, message: "rsync was killed by signal \(signal)"))
      }
    } catch is CancellationError {
      return .ended(.failed(kind: .rsync, message: "the transfer was cancelled"))
    } catch let error as SubprocessError where Self.isNotRunnable(error) {
      return .ended(
        .failed(
          kind: .io,
          message: "cannot run rsync ('\(config.rsyncPath)'): \(error); install rsync or set rsyncPath"))
    } catch {
      return .ended(.failed(kind: .io, message: "running rsync ('\(config.rsyncPath)') failed: \(error)"))
    }
  }

  /// Whether starting rsync failed because the executable is missing or not executable (not, say,
  /// for lack of memory or processes, which passes).
  static func isNotRunnable(_ error: SubprocessError) -> Bool {
    if error.code == .executableNotFound { return true }
    guard error.code == .spawnFailed, let errno = error.underlyingError else { return false }
    return [.noSuchFileOrDirectory, .permissionDenied, .notDirectory, .execFormatError].contains(errno)
  }

  /// Maps an rsync exit status and its output to an outcome.
  ///
  /// Exit 23 names the failing paths (see ``RsyncPathError``) as far as `stderr` tells: the paths
  /// printed by a sender are read against `source`; `stderrComplete` says whether stderr was kept whole.
  static func classify(
    exitCode: Int32, stdout: String, stderr: String, target: RsyncTarget, source: String = "",
    stderrComplete: Bool = true
  ) -> TransferOutcome {
    let tail = stderrTail(stderr)
    switch exitCode {
    case 0:
      let (files, bytes) = parseStats(stdout)
      return .ok(files: files, bytes: bytes)
    case 23:
      let errors = RsyncPathError.parse(
        stderr: stderr, complete: stderrComplete, source: source, target: target)
      return .incomplete(
        errors: errors, message: "some files were not transferred to \(target.url) (rsync exit 23): \(tail)")
    case 24:
      return .partial(
        code: exitCode,
        message: "some files vanished while being sent (normal under live writes); they are re-queued")
    case 5 where stderr.contains("auth failed"):
      return .failed(
        kind: .auth,
        message:
          "the rsync daemon \(target.host) refused user '\(target.user ?? "")' on module '\(target.module)' "
          + "(auth failed): check the password file and the module's 'auth users' and 'secrets file'")
    case 10, 35:
      return .failed(
        kind: .unreachable,
        message: "cannot reach the rsync daemon at \(target.url) (rsync exit \(exitCode)): \(tail)")
    case 30:
      return .failed(kind: .timeout, message: "rsync timed out talking to \(target.url): \(tail)")
    default:
      if exitCode == 5 && (stderr.contains("timed out") || stderr.contains("timeout")) {
        return .failed(kind: .timeout, message: "rsync timed out connecting to \(target.url): \(tail)")
      }
      return .failed(kind: .rsync, message: "rsync to \(target.url) failed with exit \(exitCode): \(tail)")
    }
  }

  /// The last few non-empty stderr lines, shortened; rsync never prints the password.
  static func stderrTail(_ stderr: String) -> String {
    let lines = stderr.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
    let tail = lines.filter { !$0.isEmpty }.suffix(3).joined(separator: " | ")
    return tail.count > 600 ? String(tail.suffix(600)) : (tail.isEmpty ? "(no message)" : tail)
  }

  /// Reads files and bytes sent from `--stats` output.
  static func parseStats(_ stdout: String) -> (UInt64, UInt64) {
    var files: UInt64 = 0
    var bytes: UInt64 = 0
    for line in stdout.split(whereSeparator: \.isNewline) {
      if line.hasPrefix("Number of regular files transferred:") {
        files = number(after: ":", in: line)
      } else if line.hasPrefix("Total transferred file size:") {
        bytes = number(after: ":", in: line)
      }
    }
    return (files, bytes)
  }

  private static func number(after sep: Character, in line: Substring) -> UInt64 {
    guard let i = line.firstIndex(of: sep) else { return 0 }
    let digits = line[line.index(after: i)...].drop(while: { $0 == " " }).prefix(while: {
      $0.isNumber || $0 == "," || $0 == "."
    }).filter(\.isNumber)
    return UInt64(String(digits)) ?? 0
  }
}
