"""JSON Schema forms named by the BPMN formJsonSchemaFilename property, shipped as package data."""
