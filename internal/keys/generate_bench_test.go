package keys

import "testing"

// BenchmarkGenerate is the cost of a new signing key of each algorithm (a
// first start, a rotation): RSA-2048 key generation dominates it.
func BenchmarkGenerate(b *testing.B) {
	for _, alg := range Algorithms {
		b.Run(alg, func(b *testing.B) {
			for b.Loop() {
				if _, err := generate(alg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
