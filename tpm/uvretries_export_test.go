package tpm

// UVIndexForTest is the UV retry index of the identity with a seed.
var UVIndexForTest = uvIndex
