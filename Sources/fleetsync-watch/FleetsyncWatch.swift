import ArgumentParser

@main
struct FleetsyncWatch: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fleetsync-watch",
    abstract: "Replicate one directory to an rsync daemon as it changes."
  )
}
