import ArgumentParser

@main
struct Fleetsync: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fleetsync",
    abstract: "Set up and run hot backup for a fleet of NFS servers.",
    discussion: """
      Exit codes: 0 ok; 2 some host failed; 3 some host unreachable; 4 both; 64 usage; 65 invalid inventory;
      1 other local error.
      """,
    subcommands: [PlanCommand.self, UpCommand.self, StatusCommand.self, DownCommand.self]
  )
}
