package localcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The names envtest gives kube-apiserver's files in its certificate
// directory: kube-apiserver finds its serving pair there by these names, and
// envtest's default flags name the service-account keys.
const (
	servingCertFile = "apiserver.crt"
	servingKeyFile  = "apiserver.key"
	saCertFile      = "sa-signer.crt"
	saKeyFile       = "sa-signer.key"
)

// pemCertificate is the PEM block type of a certificate.
const pemCertificate = "CERTIFICATE"

// apiServerNames are the DNS names a kube-apiserver's serving certificate
// carries in a cluster: clients that reach an instance by its endpoint
// address verify it as kubernetes.default.svc.
var apiServerNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local"}

// writeCerts writes into dir what every kube-apiserver of the cluster
// shares: one serving certificate for all their addresses (the loopback ones
// they listen on and the ones they advertise) and the service-account
// signing keys, so that a client or a token works against any instance. It
// returns the serving CA's certificate (PEM). envtest, finding the serving
// pair there, leaves the directory as it is.
func writeCerts(dir string, ips []net.IP) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ca := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "loadshed-localcluster-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := sign(ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    apiServerNames,
		IPAddresses: ips,
	}
	servingDER, err := sign(serving, caCert, &servingKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sa := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "loadshed-localcluster-service-accounts"},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	saDER, err := sign(sa, sa, &saKey.PublicKey, saKey)
	if err != nil {
		return nil, err
	}
	if err := writePEMs(dir, servingDER, saDER, servingKey, saKey); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: caDER}), nil
}

// writePEMs writes the serving and service-account certificates and keys
// into dir, as envtest looks for them.
func writePEMs(dir string, servingDER, saDER []byte, servingKey, saKey *ecdsa.PrivateKey) error {
	for name, block := range map[string]*pem.Block{
		servingCertFile: {Type: pemCertificate, Bytes: servingDER},
		saCertFile:      {Type: pemCertificate, Bytes: saDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}
	for name, key := range map[string]*ecdsa.PrivateKey{servingKeyFile: servingKey, saKeyFile: saKey} {
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// sign signs a certificate valid for a year (a kept cluster may run for
// days) with a random serial number.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate of %s: %w", tmpl.Subject.CommonName, err)
	}
	return der, nil
}
