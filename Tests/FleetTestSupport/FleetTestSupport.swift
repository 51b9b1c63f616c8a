/// Test fleet helpers; filled by the test-fleet work (scripts/testfleet).
public enum FleetTestSupportModule {}
