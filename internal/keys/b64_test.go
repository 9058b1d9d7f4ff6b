package keys

import "encoding/base64"

func b64(s string) string      { return b64Bytes([]byte(s)) }
func b64Bytes(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
