import ArgumentParser
import FleetCore
import FleetProvision
import FleetSSH
import Foundation

/// `fleetsync verify`: compares every protected directory with its backups by checksum.
struct VerifyCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "verify",
    abstract: "Compare protected directories with their backups by checksum; --repair sends the differences.",
    discussion: """
      On each source host, over SSH, runs `nice -n 19 ionice -c 3 rsync -n -c -aAXHS --numeric-ids \
      --delete` from the directory to its backup module (through the rsync daemon, with the watcher's \
      password file), and reports per directory the files compared and the entries that differ, are \
      missing on the backup, are only on the backup (extra; versions never count) or have other \
      attributes, with the first few paths of each. --limit HOST:PATH checks one directory (PATH: its \
      path or inventory name). A host whose backup differs counts as failed (exit 2); a repaired one \
      as changed.

      --repair sends what differs or is missing (what it replaces is kept as a version when the module \
      keeps versions) and deletes extra entries only with --delete. It refuses to run from a source \
      that is missing, empty, or not the directory the watcher recorded (unmounted or replaced).

      """ + ExitStatus.helpText)

  @OptionGroup var common: InventoryOptions

  @Flag(name: .long, help: "Send what differs or is missing to the backup.")
  var repair = false

  @Flag(name: .long, help: "With --repair: also delete what is only on the backup.")
  var delete = false

  @Option(
    name: .long,
    help: ArgumentHelp("Compare only this percentage of the files, picked at random.", valueName: "percent"))
  var sample: Double?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Seconds one directory's comparison (or repair) may take before it is stopped (default: a day).",
      valueName: "s"))
  var timeout: Int = 86_400

  @Flag(name: .long, help: "Print the outcome as JSON.")
  var json = false

  func validate() throws {
    guard timeout > 0 else { throw ValidationError("--timeout must be 1 second or more") }
    if delete && !repair { throw ValidationError("--delete deletes only with --repair") }
    if let sample {
      guard sample > 0 && sample <= 100 else {
        throw ValidationError("--sample must be above 0 and at most 100")
      }
      guard !repair else { throw ValidationError("--repair compares every file: leave out --sample") }
    }
  }

  func run() async throws {
    let inventory = try common.load()
    var options = common.options()
    var request = VerifyRequest()
    options.limit = []
    for item in common.options().limit {
      guard let colon = item.firstIndex(of: ":") else {
        options.limit.append(item)
        continue
      }
      let host = String(item[..<colon])
      options.limit.append(host)
      request.directories[host, default: []].append(String(item[item.index(after: colon)...]))
    }
    request.repair = repair
    request.delete = delete
    request.samplePercent = sample
    let limitedOptions = options
    let hosts = try await withProvisioner(inventory, limitedOptions, operationTimeout: .seconds(timeout)) {
      try await $0.verify(request)
    }
    if json {
      print(try VerifyReport.json(hosts))
    } else {
      for line in VerifyReport.lines(hosts) { print(line) }
    }
    try ExitStatus(hosts.map(\.outcome)).throwIfNotOK()
  }
}

/// How `fleetsync verify` prints its outcome.
enum VerifyReport {
  struct Host: Codable {
    var host: String
    var outcome: String
    var detail: String
    var directories: [DirectoryVerify]
  }

  static func lines(_ hosts: [HostVerify]) -> [String] {
    var out: [String] = []
    for host in hosts {
      if host.directories.isEmpty { out.append("\(host.host)  \(host.outcome.word)  \(host.outcome.detail)") }
      for directory in host.directories {
        out.append("\(host.host):\(directory.source) → \(directory.target)  \(directory.outcome.rawValue)")
        out.append("  \(directory.detail)")
        for (label, paths) in examples(directory.found) where !paths.isEmpty {
          out.append("  \(label): " + paths.joined(separator: ", "))
        }
      }
    }
    return out + ["", HostRecap.line(hosts.map(\.outcome), verb: "verify")]
  }

  static func examples(_ tally: VerifyTally?) -> [(String, [String])] {
    guard let tally else { return [] }
    return [
      ("differing", tally.differingPaths), ("missing", tally.missingPaths), ("extra", tally.extraPaths),
      ("other attributes", tally.attributePaths),
    ]
  }

  static func json(_ hosts: [HostVerify]) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let report = hosts.map {
      Host(host: $0.host, outcome: $0.outcome.word, detail: $0.outcome.detail, directories: $0.directories)
    }
    return String(decoding: try encoder.encode(report), as: UTF8.self)
  }
}
