import FleetCore

extension FleetError.Code {
  /// The health endpoint's address and port are taken by another process.
  public static let healthPortInUse = FleetError.Code("health.portInUse", meaning: .failed)
  /// The health endpoint could not be started for another reason (bad address, permission).
  public static let healthBind = FleetError.Code("health.bind", meaning: .failed)
  /// A systemd notification could not be sent.
  public static let healthNotify = FleetError.Code("health.notify", meaning: .failed)
}
