import ArgumentParser
import FleetAgent

/// `fleetsync-watch`: replicate one directory to an rsync daemon as it changes.
@main
struct FleetsyncWatch: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fleetsync-watch",
    abstract: "Replicate one directory to an rsync daemon as it changes.",
    discussion: """
      Exit status: 0 clean stop, 64 usage or configuration error, 69 health port in use, \
      1 other fatal error. See docs/watcher.md.
      """,
    subcommands: [Run.self]
  )
}

/// `fleetsync-watch run`: the agent, from a config file or from options.
struct Run: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Watch a directory and replicate it until stopped (SIGTERM/SIGINT; SIGHUP reloads --config).",
    discussion: """
      Either --config FILE, or --source and --target with the other options. The rsync password comes \
      from --password-file (mode 600) or the RSYNC_PASSWORD environment variable, never from the \
      command line.
      """
  )

  @Option(name: .long, help: ArgumentHelp("Config file (key = value lines).", valueName: "file"))
  var config: String?

  @Option(name: .long, help: ArgumentHelp("Directory to replicate (absolute).", valueName: "dir"))
  var source: String?

  @Option(
    name: .long,
    help: ArgumentHelp("Destination: rsync://USER@HOST[:PORT]/MODULE[/SUBDIR].", valueName: "url"))
  var target: String?

  @Option(
    name: .long,
    help: ArgumentHelp("File holding the rsync password (mode 600).", valueName: "file"))
  var passwordFile: String?

  @Option(
    name: .long,
    help: ArgumentHelp("Journal directory (default /var/lib/fleetsync/watch/<hash>).", valueName: "dir"))
  var stateDir: String?

  @Option(name: .long, help: ArgumentHelp("Health endpoint address (default 127.0.0.1).", valueName: "addr"))
  var healthAddress: String?

  @Option(name: .long, help: ArgumentHelp("Health endpoint port (default: no endpoint).", valueName: "n"))
  var healthPort: String?

  @Option(name: .long, help: ArgumentHelp("rsync exclude pattern; repeatable.", valueName: "pattern"))
  var exclude: [String] = []

  @Option(name: .long, help: ArgumentHelp("Batching delay in milliseconds (default 100).", valueName: "ms"))
  var batchDelay: String?

  @Option(name: .long, help: ArgumentHelp("Parallel rsync transfers (default 4).", valueName: "n"))
  var workers: String?

  @Option(name: .long, help: ArgumentHelp("rsync binary (default: rsync on PATH).", valueName: "path"))
  var rsyncPath: String?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Log level: \(WatchAgent.logLevels.joined(separator: ", ")).", valueName: "level"))
  var logLevel: String = "info"

  func run() async throws {
    var options = AgentOptions()
    options.source = source
    options.target = target
    options.passwordFile = passwordFile
    options.stateDir = stateDir
    options.healthAddress = healthAddress
    options.healthPort = healthPort
    options.excludes = exclude
    options.batchDelay = batchDelay
    options.workers = workers
    options.rsyncPath = rsyncPath
    let status = await WatchAgent.main(configFile: config, options: options, logLevel: logLevel)
    if status != 0 { throw ExitCode(status) }
  }
}
