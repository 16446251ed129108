// Package migrate is the end-to-end test of `twill migrate`: a lab whose
// nodes all run the real flanneld, moved to twill node by node while TCP
// streams run between pods of every pair of nodes, and one node moved
// back. Root only (it builds network namespaces).
package migrate
