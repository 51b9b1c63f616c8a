import ArgumentParser
import FleetCore

@main
struct Fleetsync: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fleetsync",
    abstract: "Set up and run hot backup for a fleet of NFS servers.",
    discussion: ExitStatus.helpText,
    subcommands: [
      PlanCommand.self, UpCommand.self, StatusCommand.self, DownCommand.self, ExecCommand.self,
      PushCommand.self, ResumeCommand.self, VerifyCommand.self, RestoreCommand.self, VersionsCommand.self,
      HealCommand.self, SuperviseCommand.self, LogsCommand.self, RotateSecretsCommand.self,
    ]
  )
}
