package tpm

// PINPublicForTest is the public area the engine defines a PIN index with.
var PINPublicForTest = pinPublic
