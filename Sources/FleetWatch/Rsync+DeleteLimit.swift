import FleetCore
import Foundation

/// The delete limit in rsync runs: every run that can delete on the backup first runs with
/// `--max-delete=0` (creates and changes are applied, deletes only counted: rsync exits 25 and
/// says how many it skipped). When it skipped any, a dry run counts them exactly, directories
/// included; that count goes to the ``DeleteGate``, and deletes it grants are applied by a run
/// capped at exactly the grant with `--max-delete`, the last line of defence: files that vanish
/// on the source meanwhile stop at the cap (rsync exits 25) and are counted again.
extension RsyncCommand {
  /// Which kind of path list a run sends.
  enum ListKind {
    /// Directories sent whole: `-r --delete`.
    case trees
    /// Paths by themselves; a listed path that is gone is deleted (`--delete-missing-args`).
    case entries
  }

  /// A run with deletes counted, not applied.
  struct Counted {
    var outcome: TransferOutcome
    /// Deletes rsync skipped.
    var deletes = 0
    /// `Number of files` and `Number of created files` of `--stats`.
    var listed = 0
    var created = 0
  }

  func arguments(_ kind: ListKind, _ file: String) -> [String] {
    switch kind {
    case .trees: treeArguments(file)
    case .entries: listArguments(file)
    }
  }

  /// Sends `list`, applying its deletes only as far as the delete limit grants them.
  func runLimitingDeletes(_ list: [RelativePath], _ kind: ListKind) async -> TransferOutcome {
    guard let deletes else { return await run(list: list) { arguments(kind, $0) } }
    var counter = self
    counter.maxDelete = 0
    var counted = Counted(outcome: .ok(files: 0, bytes: 0))
    var planned = Planned()
    // Deletes come from gone paths, and from paths whose type changed (a directory now a file):
    // the dry run and the applying run send the whole list again.
    let first = await withListFile(list) { file in
      counted = await counter.runCounting(counter.arguments(kind, file))
      if counted.deletes > 0, !counted.outcome.isFailure {
        planned = await plannedDeletes(arguments(kind, file))
      }
      return counted.outcome
    }
    guard counted.deletes > 0, !first.isFailure else { return first }
    let count = max(counted.deletes, planned.count ?? 0)
    guard case .apply(let cap) = deletes.decide(deletes: count, paths: shown(planned, list, kind)) else {
      return first
    }
    var applier = self
    applier.maxDelete = cap
    applier.ignoreTimes = false
    let second = await withListFile(list) { await applier.runApplying(applier.arguments(kind, $0)) }
    return Self.combine(first, second)
  }

  /// Examples of what `list` deletes: the dry run's, or the listed paths that are gone.
  private func shown(_ planned: Planned, _ list: [RelativePath], _ kind: ListKind) -> [String] {
    if !planned.paths.isEmpty { return planned.paths }
    let root = Array(config.source.utf8)
    let gone = kind == .trees ? list : list.filter { TransferLoop.kind(of: $0, root: root) == .missing }
    return (gone.isEmpty ? list : gone).map { String(decoding: $0.bytes, as: UTF8.self) }
  }

  /// A reconciling full sync whose deletes are applied only as far as the delete limit grants them.
  func fullSyncLimitingDeletes() async -> TransferOutcome {
    guard let deletes else { return await run(arguments: fullArguments) }
    var counter = self
    counter.maxDelete = 0
    let counted = await counter.runCounting(counter.fullArguments)
    guard !counted.outcome.isFailure else { return counted.outcome }
    let planned = counted.deletes > 0 ? await plannedDeletes(fullArguments) : Planned()
    let count = max(counted.deletes, planned.count ?? 0)
    deletes.fullSyncCounted(listed: counted.listed, created: counted.created, deletes: count)
    let decision = deletes.decide(deletes: count, paths: nil)
    if decision == .hold { deletes.held(examples: planned.paths) }
    guard case .apply(let cap) = decision, cap > 0 else { return counted.outcome }
    var applier = self
    applier.maxDelete = cap
    return Self.combine(counted.outcome, await applier.runApplying(applier.fullArguments))
  }

  /// What a run would delete, from a dry run of it (`--dry-run` never changes the backup).
  struct Planned {
    /// rsync's `Number of deleted files`, directories included; nil when the dry run failed.
    var count: Int?
    /// A few of the paths, at most ``DeleteBudget/samplePaths``.
    var paths: [String] = []
  }

  /// Counts what the run of `arguments` would delete, directories included, with a dry run of it.
  ///
  /// The counting run (`--max-delete=0`) leaves out a directory that still holds files, though
  /// deleting it once emptied is one more delete to rsync; this count is the one `--max-delete`
  /// applies, so a cap at it stops rsync at exactly what was granted.
  func plannedDeletes(_ arguments: [String]) async -> Planned {
    var dryArguments = arguments.filter { !$0.hasPrefix("--max-delete=") }
    dryArguments.insert(contentsOf: ["--dry-run", "--info=del1"], at: max(0, dryArguments.count - 2))
    guard case .exited(let code, let out, _, _) = await execute(arguments: dryArguments),
      [0, 23, 24].contains(code)
    else { return Planned() }
    let count = Self.statValue("Number of deleted files:", in: out)
    return Planned(count: count, paths: Self.deletedPaths(out))
  }

  /// The paths of rsync's `deleting PATH` lines, at most ``DeleteBudget/samplePaths``.
  static func deletedPaths(_ output: String) -> [String] {
    let prefix = "deleting "
    let lines = output.split(whereSeparator: \.isNewline).filter { $0.hasPrefix(prefix) }
    return lines.prefix(DeleteBudget.samplePaths).map { String($0.dropFirst(prefix.count)) }
  }

  /// Runs rsync (with `--max-delete=0`) and reads how many deletes it skipped.
  func runCounting(_ arguments: [String]) async -> Counted {
    switch await execute(arguments: arguments) {
    case .ended(let outcome):
      return Counted(outcome: outcome)
    case .exited(let code, let out, let err, let complete):
      changes?.note(out)
      let skipped = Self.skippedDeletes(err) ?? Self.skippedDeletes(out)
      let settled: Int32 = code == 25 && skipped != nil ? 0 : code
      return Counted(
        outcome: Self.classify(
          exitCode: settled, stdout: out, stderr: err, target: config.target, source: config.source,
          stderrComplete: complete),
        deletes: skipped ?? 0, listed: Self.stat("Number of files:", in: out),
        created: Self.stat("Number of created files:", in: out))
    }
  }

  /// Runs rsync with the deletes granted; more deletes than were counted (files vanished in
  /// between) stop at the cap and re-queue the paths, to be counted again.
  func runApplying(_ arguments: [String]) async -> TransferOutcome {
    switch await execute(arguments: arguments) {
    case .ended(let outcome): return outcome
    case .exited(25, let out, _, _):
      changes?.note(out, overwrites: false)
      return .partial(
        code: 25, message: "more files to delete than were counted; re-queued to be counted again")
    case .exited(let code, let out, let err, let complete):
      // The counting run sent these files already: only the deletes are new.
      changes?.note(out, overwrites: false)
      return Self.classify(
        exitCode: code, stdout: out, stderr: err, target: config.target, source: config.source,
        stderrComplete: complete)
    }
  }

  /// The first run's figures with the second run's verdict: a failure or partial second run wins.
  static func combine(_ first: TransferOutcome, _ second: TransferOutcome) -> TransferOutcome {
    switch (first, second) {
    case (.ok(let f1, let b1), .ok(let f2, let b2)): .ok(files: f1 + f2, bytes: b1 + b2)
    case (_, .failed), (_, .partial), (_, .incomplete): second
    case (.partial, .ok), (.failed, .ok), (.incomplete, .ok): first
    }
  }

  /// N of rsync's "Deletions stopped due to --max-delete limit (N skipped)".
  static func skippedDeletes(_ output: String) -> Int? {
    guard
      let line = output.split(whereSeparator: \.isNewline).last(where: { $0.contains("--max-delete limit (") }
      ),
      let open = line.range(of: "limit (")
    else { return nil }
    return Int(line[open.upperBound...].prefix(while: { $0.isNumber || $0 == "," }).filter(\.isNumber))
  }

  /// The leading number after `label` at the start of a `--stats` line; 0 when absent.
  static func stat(_ label: String, in stdout: String) -> Int {
    statValue(label, in: stdout) ?? 0
  }

  /// The leading number after `label` at the start of a `--stats` line; nil when absent.
  static func statValue(_ label: String, in stdout: String) -> Int? {
    guard let line = stdout.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix(label) }) else {
      return nil
    }
    let digits = line.dropFirst(label.count).drop(while: { $0 == " " }).prefix(while: {
      $0.isNumber || $0 == ","
    })
    return Int(digits.filter(\.isNumber))
  }
}
