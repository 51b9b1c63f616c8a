import ArgumentParser

@main
struct Fleetsync: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fleetsync",
    abstract: "Set up and run hot backup for a fleet of NFS servers."
  )
}
