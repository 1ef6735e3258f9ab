// The deterministic simulator (issue 3) lives here.
public enum MeshSim {}
