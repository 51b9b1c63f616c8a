/// Namespace placeholder until this module's issue lands; see docs/architecture.md.
public enum FleetHealthModule {}
